"""Lightning module that distils a frozen teacher into a student (STaR, ARMHuBERT, DistilHuBERT).

One module serves the three methods; what differs is how targets are formed and which pure loss
from :mod:`audio_compress.losses` is applied:

* ``star``: temporal Gram matrices of the pre-Transformer input and every layer, 1:1 between
  student and (mapped) teacher layers; layer-wise + intra-layer terms.
* ``armhubert``: masking distillation; the teacher runs twice (clean, and masked with its own
  mask embedding at the same span mask the student gets), the student's layer-wise projections
  are matched per frame.
* ``distilhubert``: prediction heads regress teacher layers with L1 + cosine.

Teacher targets come from the online teacher or, for ``star``/``distilhubert``, from a feature
dump (:mod:`audio_compress.dump`).
"""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor

from audio_compress.frames import frame_padding_mask, num_frames
from audio_compress.losses import (
    distilhubert_loss,
    masking_distillation_loss,
    plain_distillation_loss,
    sample_span_mask,
    star_loss,
)
from audio_compress.models import build_student
from audio_compress.models.teacher_init import init_student_from_teacher
from audio_compress.tasks.config import DistillConfig
from compact_ssl.training import check_finite_loss


def default_teacher_layers(student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher hidden-state index for each student layer: 1:1 when the depths match, else evenly
    spaced (student layer i of L_s takes teacher layer round(i * L_t / L_s))."""
    if student_layers == teacher_layers:
        return list(range(1, teacher_layers + 1))
    return [round((i + 1) * teacher_layers / student_layers) for i in range(student_layers)]


def needed_teacher_layers(config: DistillConfig, student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher hidden-state indices a method consumes (what a feature dump must store)."""
    mapping = config.teacher_layers or default_teacher_layers(student_layers, teacher_layers)
    if config.method == "star":
        return [0, *mapping]
    if config.method == "distilhubert":
        return list(config.student_overrides.get("pred_layers") or _pred_layers(config))
    return list(mapping)


def _pred_layers(config: DistillConfig) -> list[int]:
    from audio_compress.models import get_student_config

    layers = get_student_config(config.student, **config.student_overrides).pred_layers
    if not layers:
        raise ValueError(f"student {config.student!r} has no prediction heads (pred_layers) for distilhubert")
    return list(layers)


class DistillationTask(L.LightningModule):
    """Student + frozen teacher + method loss, with AdamW and warmup/linear-decay schedule.

    Batches are :class:`audio_compress.data.dataset.WaveBatch` (online teacher) or
    :class:`audio_compress.dump.DumpBatch` (targets read from a dump).
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
        self.num_student_layers = self.student.config.num_layers
        if config.init_from_teacher:
            report = init_student_from_teacher(self.student, teacher, encoder_layers=config.init_teacher_layers)
            print(
                f"Initialised {len(report['copied'])} student tensors from the teacher; "
                f"not initialised: {report['student_not_initialised']}; unused teacher tensors: {report['teacher_only']}"
            )
        self.layer_map = config.teacher_layers or default_teacher_layers(self.num_student_layers, teacher.num_layers)
        if len(self.layer_map) != self.num_student_layers:
            raise ValueError(
                f"teacher_layers has {len(self.layer_map)} entries but the student has {self.num_student_layers} layers"
            )
        if config.method == "armhubert" and self.student.config.proj_dim != teacher.hidden_size:
            raise ValueError(
                f"armhubert matches projection heads to teacher layers: student {config.student!r} has "
                f"proj_dim={self.student.config.proj_dim} but the teacher is {teacher.hidden_size} wide; "
                f"set student_overrides.proj_dim: {teacher.hidden_size}"
            )
        self._mask_generator = torch.Generator().manual_seed(config.trainer.seed)

    # ------------------------------------------------------------------ targets
    def _teacher_states(self, batch, frame_mask: Tensor | None = None) -> list[Tensor]:
        """Teacher hidden states indexed by teacher layer (dict-like list over all layers)."""
        out = self.teacher(batch.wavs, padding_mask=batch.padding_mask, frame_mask=frame_mask)
        return out.hidden_states

    def _targets(self, batch, layers: list[int]) -> list[Tensor]:
        dumped = getattr(batch, "targets", None)
        if dumped is not None:
            position = {layer: i for i, layer in enumerate(batch.layers)}
            missing = [layer for layer in layers if layer not in position]
            if missing:
                raise ValueError(f"the feature dump lacks teacher layers {missing} (has {batch.layers}); re-run the dump")
            return [dumped[position[layer]] for layer in layers]
        states = self._teacher_states(batch)
        return [states[layer] for layer in layers]

    # ------------------------------------------------------------------ losses
    def compute_loss(self, batch, train: bool) -> dict[str, Tensor]:
        """Method loss for one batch; returns a dict with ``loss`` and its terms."""
        cfg = self.config.loss
        method = self.config.method
        if method == "armhubert":
            return self._arm_loss(batch, train)
        if method == "star" and cfg.attn_weight > 0:
            return self._star_with_attention(batch)
        out = self.student(batch.wavs, padding_mask=batch.padding_mask)
        pad = out.padding_mask
        if method == "star":
            targets = self._targets(batch, [0, *self.layer_map])
            return star_loss(
                [out.pre_transformer, *out.hidden_states],
                targets,
                padding_mask=pad,
                normalize=cfg.normalize,
                layerwise_weight=cfg.layerwise_weight,
                intra_weight=cfg.intra_weight,
            )
        pred_layers = list(self.student.config.pred_layers)
        targets = self._targets(batch, pred_layers)
        frames = min(out.predictions.shape[2], targets[0].shape[1])
        target = torch.stack([t[:, :frames] for t in targets], dim=1)
        return distilhubert_loss(out.predictions[:, :, :frames], target, padding_mask=pad[:, :frames], cos_weight=cfg.cos_weight)

    def _star_with_attention(self, batch) -> dict[str, Tensor]:
        """STaR with the head-averaged attention KL term: both models also return their maps
        (layer l of the student is matched to its mapped teacher layer)."""
        cfg = self.config.loss
        if getattr(batch, "targets", None) is not None:
            raise ValueError("loss.attn_weight > 0 needs the teacher's attention maps; a feature dump has none")
        teacher_out = self.teacher(batch.wavs, padding_mask=batch.padding_mask, output_attentions=True)
        out = self.student(batch.wavs, padding_mask=batch.padding_mask, output_attentions=True)
        return star_loss(
            [out.pre_transformer, *out.hidden_states],
            [teacher_out.hidden_states[layer] for layer in [0, *self.layer_map]],
            padding_mask=out.padding_mask,
            normalize=cfg.normalize,
            layerwise_weight=cfg.layerwise_weight,
            intra_weight=cfg.intra_weight,
            attn_weight=cfg.attn_weight,
            student_attn=out.attentions,
            teacher_attn=[teacher_out.attentions[layer - 1] for layer in self.layer_map],
        )

    def _arm_loss(self, batch, train: bool) -> dict[str, Tensor]:
        cfg = self.config.loss
        if getattr(batch, "targets", None) is not None:
            raise ValueError("armhubert needs the teacher on masked input at every step; a feature dump cannot provide it")
        pad = frame_padding_mask(batch.padding_mask, num_frames(batch.wavs.shape[1]))
        clean = self._teacher_states(batch)
        clean = [clean[layer] for layer in self.layer_map]
        if not train:
            out = self.student(batch.wavs, padding_mask=batch.padding_mask)
            return plain_distillation_loss(
                out.projections, clean, padding_mask=out.padding_mask, last_weight=cfg.last_weight, hint_weight=cfg.hint_weight
            )
        mask = sample_span_mask(
            tuple(pad.shape), cfg.mask_prob, cfg.mask_length, padding_mask=pad, min_masks=cfg.min_masks,
            generator=self._mask_generator,
        ).to(batch.wavs.device)
        masked = self._teacher_states(batch, frame_mask=mask)
        masked = [masked[layer] for layer in self.layer_map]
        out = self.student(batch.wavs, padding_mask=batch.padding_mask, frame_mask=mask)
        return masking_distillation_loss(
            out.projections, clean, masked, mask, padding_mask=out.padding_mask,
            last_weight=cfg.last_weight, hint_weight=cfg.hint_weight,
        )

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
        opt_cfg = self.config.optim
        decay, no_decay = [], []
        for name, param in self.student.named_parameters():
            if not param.requires_grad:
                continue
            (no_decay if param.dim() <= 1 or name.endswith(".bias") else decay).append(param)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": opt_cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=opt_cfg.lr, betas=tuple(opt_cfg.betas), eps=opt_cfg.eps,
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(total * opt_cfg.warmup_proportion)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_linear_decay(step, warmup, total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

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


__all__ = ["DistillationTask", "default_teacher_layers", "needed_teacher_layers",
           "warmup_linear_decay"]
