"""STaR: temporal Gram matrices of the pre-Transformer input and every layer, matched 1:1 between
student and (mapped) teacher layers with layer-wise + intra-layer terms, optionally plus the
head-averaged attention KL (``loss.attn_weight > 0``, online teacher only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from audio_compress.data.dataset import WaveBatch
from audio_compress.losses import star_loss
from audio_compress.methods.base import DistillMethod

if TYPE_CHECKING:
    from audio_compress.models import StudentModel
    from audio_compress.teachers import FrozenTeacher


class STaR(DistillMethod):
    """``method: star``; loss options ``normalize``, ``layerwise_weight``, ``intra_weight``,
    ``attn_weight``. Teacher layers: 0 (the pre-Transformer input) and the layer map."""

    name = "star"
    upstream = "star_local"

    def teacher_layers(self) -> list[int]:
        return [0, *self.layer_map]

    def dump_refusal(self) -> str | None:
        if self.config.loss.attn_weight > 0:
            return "loss.attn_weight > 0 needs the teacher's attention maps; a feature dump has none"
        return None

    def loss(self, batch: WaveBatch, student: StudentModel, teacher: FrozenTeacher, train: bool,
             generator: torch.Generator) -> dict[str, Tensor]:
        cfg = self.config.loss
        weights = {"normalize": cfg.normalize, "layerwise_weight": cfg.layerwise_weight,
                   "intra_weight": cfg.intra_weight}
        if cfg.attn_weight > 0:
            # both models also return their maps; student layer l is matched to its mapped teacher layer
            teacher_out = teacher(batch.wavs, padding_mask=batch.padding_mask, output_attentions=True)
            out = student(batch.wavs, padding_mask=batch.padding_mask, output_attentions=True)
            return star_loss(
                [out.pre_transformer, *out.hidden_states],
                [teacher_out.hidden_states[layer] for layer in self.teacher_layers()],
                padding_mask=out.padding_mask,
                **weights,
                attn_weight=cfg.attn_weight,
                student_attn=out.attentions,
                teacher_attn=[teacher_out.attentions[layer - 1] for layer in self.layer_map],
            )
        out = student(batch.wavs, padding_mask=batch.padding_mask)
        return star_loss(
            [out.pre_transformer, *out.hidden_states],
            self.targets(batch, teacher, self.teacher_layers()),
            padding_mask=out.padding_mask,
            **weights,
        )
