"""Pure distillation loss functions (no modules, no model imports).

All functions take a frame-level ``padding_mask`` ``(B, T)`` that is True at padded frames;
padded frames never contribute. Student and teacher tensors are cropped to their common frame
count by :func:`crop_to_common_length`. Arithmetic is done in at least float32.

* STaR (:mod:`.tgm`, :mod:`.attention`): :func:`temporal_gram`, :func:`gram_mse`,
  :func:`layerwise_tgm_loss`, :func:`intra_layer_tgm_loss`, :func:`avg_attention_kl`,
  :func:`star_loss`;
* ARMHuBERT (:mod:`.masking`): :func:`masking_distillation_loss`,
  :func:`plain_distillation_loss`, :func:`sample_span_mask`;
* DistilHuBERT (:mod:`.distilhubert`): :func:`distilhubert_loss`.
"""

from ._common import crop_to_common_length
from .attention import avg_attention_kl
from .distilhubert import distilhubert_loss
from .masking import masking_distillation_loss, plain_distillation_loss, sample_span_mask
from .tgm import (
    NORMALIZE_OPTIONS,
    gram_mse,
    intra_layer_tgm_loss,
    layerwise_tgm_loss,
    star_loss,
    temporal_gram,
)

__all__ = [
    "NORMALIZE_OPTIONS",
    "avg_attention_kl",
    "crop_to_common_length",
    "distilhubert_loss",
    "gram_mse",
    "intra_layer_tgm_loss",
    "layerwise_tgm_loss",
    "masking_distillation_loss",
    "plain_distillation_loss",
    "sample_span_mask",
    "star_loss",
    "temporal_gram",
]
