"""Shared Lightning base of the pretraining methods: backbone + projection head from the config,
SGD or Adam with the configured schedule, logging, the NaN guard and cross-process gathering."""

from __future__ import annotations

import abc
import copy
from collections.abc import Callable, Sequence

import lightning as L
import torch
from torch import Tensor, nn

from compact_ssl.training import NonFiniteLossError
from vision_ssl.backbones import build_backbone
from vision_ssl.config import ExperimentConfig, config_from_dict
from vision_ssl.heads import ProjectionHead
from vision_ssl.schedules import lr_lambda


class PretrainMethod(L.LightningModule, abc.ABC):
    """Base class: subclasses implement :meth:`compute_loss` (and may extend :meth:`features`).

    Batches are ``(views, labels)``: a list of ``data.num_views`` image tensors ``[B, 3, H, W]``
    and the ``[B]`` class labels (used only by supervised methods).
    """

    def __init__(self, config: ExperimentConfig | dict) -> None:
        super().__init__()
        if isinstance(config, dict):
            config = config_from_dict(config)
        self.config = config
        self.save_hyperparameters({"config": config.to_dict()})
        self.backbone = build_backbone(config.model.backbone)
        self.head = self.make_head()

    def make_head(self) -> ProjectionHead:
        """A projection head of the configured shape on the backbone's features."""
        m = self.config.model
        return ProjectionHead(self.backbone.out_dim, m.head_hidden or self.backbone.out_dim, m.proj_dim, m.head_bn)

    @abc.abstractmethod
    def compute_loss(self, views: list[Tensor], labels: Tensor) -> dict[str, Tensor]:
        """Loss terms of one batch; ``"loss"`` is optimised, the rest is logged (each method
        implements it; the base class cannot be instantiated)."""

    #: forward-pass grouping of the method's reference code when ``model.single_pass`` is null
    reference_single_pass: bool = True

    @property
    def single_pass(self) -> bool:
        """Whether :meth:`encode_batches` concatenates its batches into one forward pass."""
        setting = self.config.model.single_pass
        return self.reference_single_pass if setting is None else setting

    def encode_batches(self, encoder: Callable[[Tensor], Tensor], batches: Sequence[Tensor]) -> list[Tensor]:
        """``encoder`` applied to each of ``batches`` (views, mixes), in one forward pass over their
        concatenation when :attr:`single_pass`, else one pass each. The results differ only through
        train-mode BatchNorm, whose statistics span whatever one pass sees."""
        if self.single_pass:
            return list(encoder(torch.cat(list(batches))).split([len(b) for b in batches]))
        return [encoder(b) for b in batches]

    def features(self, x: Tensor) -> dict[str, Tensor]:
        """Representations evaluated downstream (kNN, linear probe): ``{"backbone": [B, D]}``."""
        return {"backbone": self.backbone(x)}

    def feature_dims(self) -> dict[str, int]:
        """Width of each entry of :meth:`features`."""
        return {"backbone": self.backbone.out_dim}

    # ---- cross-process helpers -------------------------------------------------------------
    @property
    def world_size(self) -> int:
        return 1 if self._trainer is None else self.trainer.world_size

    def gather(self, x: Tensor, grads: bool = True) -> Tensor:
        """Concatenate ``x`` over processes (rank order), with gradients flowing back when
        ``grads``; identity on one process."""
        if self.world_size == 1:
            return x
        return self.all_gather(x, sync_grads=grads).flatten(0, 1)

    def gather_halves(self, x: Tensor, grads: bool = True) -> Tensor:
        """Like :meth:`gather` but ordered [first halves of all ranks, second halves of all ranks],
        so that mixing "first half with second half" of the global batch pairs the same images
        as each rank's local mix."""
        if self.world_size == 1:
            return x
        g = self.all_gather(x, sync_grads=grads)
        half = g.shape[1] // 2
        return torch.cat([g[:, :half].flatten(0, 1), g[:, half:].flatten(0, 1)])

    # ---- Lightning hooks -------------------------------------------------------------------
    def training_step(self, batch: tuple[list[Tensor], Tensor], batch_idx: int) -> Tensor:
        views, labels = batch
        out = self.compute_loss(views, labels)
        loss = out["loss"]
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"{self.config.method}: loss is {loss.item()} at step {self.global_step} (epoch {self.current_epoch}); "
                "lower optim.lr, raise the temperature, or train with trainer.precision 32-true")
        self.log("train/loss", loss, prog_bar=True, batch_size=len(labels))
        for name, value in out.items():
            if name != "loss":
                self.log(f"train/{name}", value, batch_size=len(labels))
        return loss

    def configure_optimizers(self):
        o = self.config.optim
        params = [p for p in self.parameters() if p.requires_grad]
        if o.optimizer == "adam":
            optimizer = torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
        else:
            optimizer = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay,
                                        nesterov=o.nesterov)
        epochs = self.trainer.max_epochs
        steps_per_epoch = max(1, self.trainer.estimated_stepping_batches // epochs)
        schedule = lr_lambda(o.lr, epochs, steps_per_epoch, schedule=o.schedule, eta_min=o.lr * o.eta_min_ratio,
                             warmup_epochs=o.warmup_epochs, warmup=o.warmup, warmup_from=o.warmup_from,
                             milestones=o.milestones, gamma=o.gamma)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy with gradients off (momentum encoders)."""
    twin = copy.deepcopy(module)
    twin.requires_grad_(False)
    return twin
