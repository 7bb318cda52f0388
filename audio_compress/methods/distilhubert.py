"""DistilHuBERT: the student's prediction heads regress teacher layers (the student's
``pred_layers``) with L1 + cosine; targets come from the online teacher or a feature dump."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from audio_compress.data.dataset import WaveBatch
from audio_compress.losses import distilhubert_loss
from audio_compress.methods.base import DistillMethod

if TYPE_CHECKING:
    from audio_compress.models import StudentConfig, StudentModel
    from audio_compress.tasks.config import DistillConfig
    from audio_compress.teachers import FrozenTeacher


class DistilHuBERT(DistillMethod):
    """``method: distilhubert``; loss option ``cos_weight``. Teacher layers: the student's
    ``pred_layers`` (the layer map is not used by the loss)."""

    name = "distilhubert"
    upstream = "distilhubert_local"

    def __init__(self, config: DistillConfig, student: StudentConfig, teacher_layers: int) -> None:
        super().__init__(config, student, teacher_layers)
        if not student.pred_layers:
            raise ValueError(f"student {config.student!r} has no prediction heads (pred_layers) for distilhubert")

    def teacher_layers(self) -> list[int]:
        return list(self.student_config.pred_layers)

    def loss(self, batch: WaveBatch, student: StudentModel, teacher: FrozenTeacher, train: bool,
             generator: torch.Generator) -> dict[str, Tensor]:
        out = student(batch.wavs, padding_mask=batch.padding_mask)
        targets = self.targets(batch, teacher, self.teacher_layers())
        frames = min(out.predictions.shape[2], targets[0].shape[1])
        target = torch.stack([t[:, :frames] for t in targets], dim=1)
        return distilhubert_loss(out.predictions[:, :, :frames], target, padding_mask=out.padding_mask[:, :frames],
                                 cos_weight=self.config.loss.cos_weight)
