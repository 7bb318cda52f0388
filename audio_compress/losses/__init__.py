"""Pure distillation loss functions (no modules, no model imports), one module per method.

All functions take a frame-level ``padding_mask`` ``(B, T)`` that is True at padded frames;
padded frames never contribute. Student and teacher tensors are cropped to their common frame
count by :func:`crop_to_common_length`. Arithmetic is done in at least float32.

* STaR (:mod:`.star`): :func:`temporal_gram`, :func:`gram_mse`, :func:`layerwise_tgm_loss`,
  :func:`intra_layer_tgm_loss`, :func:`avg_attention_kl`, :func:`star_loss`;
* ARMHuBERT (:mod:`.armhubert`): :func:`masking_distillation_loss`,
  :func:`plain_distillation_loss`, :func:`sample_span_mask`;
* DistilHuBERT (:mod:`.distilhubert`): :func:`distilhubert_loss`;
* shared helpers (:mod:`._common`): :func:`crop_to_common_length`.
"""

from ._common import crop_to_common_length
from .armhubert import masking_distillation_loss, plain_distillation_loss, sample_span_mask
from .distilhubert import distilhubert_loss
from .star import (
    NORMALIZE_OPTIONS,
    avg_attention_kl,
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
