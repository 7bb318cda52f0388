"""ARMHuBERT: masking distillation. In training the teacher runs twice (clean, and masked with its
own mask embedding at the span mask the student gets) and the student's layer-wise projections are
matched per frame; validation matches the unmasked student to the clean teacher. The teacher runs
online at every step, so a feature dump cannot serve it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from audio_compress.data.dataset import WaveBatch
from audio_compress.frames import frame_padding_mask, num_frames
from audio_compress.losses import masking_distillation_loss, plain_distillation_loss, sample_span_mask
from audio_compress.methods.base import DistillMethod

if TYPE_CHECKING:
    from audio_compress.models import StudentModel
    from audio_compress.teachers import FrozenTeacher


class ARMHuBERT(DistillMethod):
    """``method: armhubert``; loss options ``mask_prob``, ``mask_length``, ``min_masks``,
    ``last_weight``, ``hint_weight``. The student's projection heads (``proj_dim``) must be as wide
    as the teacher."""

    name = "armhubert"
    upstream = "armhubert_local"

    def dump_refusal(self) -> str | None:
        return "armhubert needs the teacher on masked input at every step; a feature dump cannot provide it"

    def check(self, teacher_width: int) -> None:
        super().check(teacher_width)
        if self.student_config.proj_dim != teacher_width:
            raise ValueError(
                f"armhubert matches projection heads to teacher layers: student {self.config.student!r} has "
                f"proj_dim={self.student_config.proj_dim} but the teacher is {teacher_width} wide; "
                f"set student_overrides.proj_dim: {teacher_width}"
            )

    def loss(self, batch: WaveBatch, student: StudentModel, teacher: FrozenTeacher, train: bool,
             generator: torch.Generator) -> dict[str, Tensor]:
        cfg = self.config.loss
        clean = self.targets(batch, teacher, self.layer_map)
        weights = {"last_weight": cfg.last_weight, "hint_weight": cfg.hint_weight}
        if not train:
            out = student(batch.wavs, padding_mask=batch.padding_mask)
            return plain_distillation_loss(out.projections, clean, padding_mask=out.padding_mask, **weights)
        pad = frame_padding_mask(batch.padding_mask, num_frames(batch.wavs.shape[1]))
        mask = sample_span_mask(
            tuple(pad.shape), cfg.mask_prob, cfg.mask_length, padding_mask=pad, min_masks=cfg.min_masks,
            generator=generator,
        ).to(batch.wavs.device)
        masked = teacher(batch.wavs, padding_mask=batch.padding_mask, frame_mask=mask).hidden_states
        out = student(batch.wavs, padding_mask=batch.padding_mask, frame_mask=mask)
        return masking_distillation_loss(
            out.projections, clean, [masked[layer] for layer in self.layer_map], mask, padding_mask=out.padding_mask,
            **weights,
        )
