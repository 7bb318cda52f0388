"""Lightning module that distils a frozen teacher into a student (STaR, ARMHuBERT, DistilHuBERT).

The module holds the generic wiring: the student, the frozen teacher, AdamW with a warmup/linear
decay schedule, logging and the checkpoint hooks. What differs between methods (which teacher
layers are used, the config checks, the loss of a batch) is the method object of
:mod:`audio_compress.methods` named by ``config.method``.

Teacher targets come from the online teacher or, where the method allows it, from a feature dump
(:mod:`audio_compress.dump`).
"""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor

from audio_compress.data.dataset import WaveBatch
from audio_compress.methods import get_method
from audio_compress.models import build_student
from audio_compress.models.teacher_init import init_student_from_teacher
from audio_compress.tasks.config import INIT_PARTS, DistillConfig
from compact_ssl.training import check_finite_loss


class DistillationTask(L.LightningModule):
    """Student + frozen teacher + the method of ``config.method``, with AdamW and warmup/linear-decay
    schedule.

    Batches are :class:`audio_compress.data.dataset.WaveBatch` (online teacher) or
    :class:`audio_compress.dump.DumpBatch` (targets read from a dump).

    Attributes:
        method: the :class:`~audio_compress.methods.DistillMethod` computing the loss.
    """

    def __init__(self, config: DistillConfig, teacher: torch.nn.Module | None = None):
        super().__init__()
        self.config = config
        self.save_hyperparameters({"config": config.to_dict()})
        self.student = build_student(config.student, **config.student_overrides)
        if teacher is None:
            from audio_compress.teachers import load_teacher

            teacher = load_teacher(config.teacher)
        self.teacher = teacher
        if config.init_from_teacher:
            parts = {part: part in config.init_teacher_parts for part in INIT_PARTS}
            report = init_student_from_teacher(self.student, teacher, encoder_layers=config.init_teacher_layers, **parts)
            print(
                f"Initialised {len(report['copied'])} student tensors from the teacher; "
                f"not initialised: {report['student_not_initialised']}; "
                f"unused teacher tensors: {report['teacher_only']}"
            )
        self.method = get_method(config.method)(config, self.student.config, teacher.num_layers)
        self.method.check(teacher.hidden_size)
        # The methods' per-batch randomness (ARMHuBERT's span masks). As an attribute of this module
        # its state is in every checkpoint (compact_ssl.training.state), so a resumed run draws what
        # the uninterrupted one would have; checkpoints written so far know it by this name.
        self._mask_generator = torch.Generator().manual_seed(config.trainer.seed)

    def compute_loss(self, batch: WaveBatch, train: bool) -> dict[str, Tensor]:
        """Method loss for one batch; returns a dict with ``loss`` and its terms."""
        return self.method.compute_loss(batch, self.student, self.teacher, train, self._mask_generator)

    # ------------------------------------------------------------------ steps
    def training_step(self, batch, batch_idx: int) -> Tensor:
        losses = self.compute_loss(batch, train=True)
        loss = losses["loss"]
        check_finite_loss(loss, self.global_step, f"batch {batch.utt_ids[:4]}...")
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items() if v.dim() == 0},
                      prog_bar=False, batch_size=len(batch))
        self.log("loss", loss.detach(), prog_bar=True, logger=False, batch_size=len(batch))
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        losses = self.compute_loss(batch, train=False)
        self.log("val_loss", losses["loss"], prog_bar=True, sync_dist=True, batch_size=len(batch))
        for key, value in losses.items():
            if key != "loss" and value.dim() == 0:
                self.log(f"val/{key}", value, sync_dist=True, batch_size=len(batch))

    # ------------------------------------------------------------------ optim
    def configure_optimizers(self):
        return adamw_warmup_linear_decay(self.student.named_parameters(), self.config.optim,
                                         self.trainer.estimated_stepping_batches)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The frozen teacher is rebuilt from config.teacher; storing it would add ~95M
        # parameters to every checkpoint.
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("teacher.")}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"].update({f"teacher.{k}": v for k, v in self.teacher.state_dict().items()})

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # the teacher is frozen: dropout stays off whatever Lightning asks
        return self


def warmup_linear_decay(step: int, warmup: int, total: int) -> float:
    """LR multiplier: linear warmup from 0 to 1 over ``warmup`` steps, then linear decay to 0 at ``total``."""
    if warmup > 0 and step < warmup:
        return step / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def adamw_warmup_linear_decay(named_parameters, opt_cfg, total_steps: float) -> dict:
    """Lightning's optimizer dict for the speech recipes: AdamW with weight decay on matrices only
    (biases and norms get none, as in s3prl's AdamW_with_schedule param groups), stepped per update
    under :func:`warmup_linear_decay` over ``total_steps``. ``opt_cfg`` has ``lr``, ``betas``, ``eps``,
    ``weight_decay`` and ``warmup_proportion``; frozen parameters are left out."""
    decay, no_decay = [], []
    for name, param in named_parameters:
        if param.requires_grad:
            (no_decay if param.dim() <= 1 or name.endswith(".bias") else decay).append(param)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": opt_cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=opt_cfg.lr, betas=tuple(opt_cfg.betas), eps=opt_cfg.eps,
    )
    total = max(1, int(total_steps))
    warmup = int(total * opt_cfg.warmup_proportion)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_linear_decay(step, warmup, total))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


__all__ = ["DistillationTask", "adamw_warmup_linear_decay", "warmup_linear_decay"]
