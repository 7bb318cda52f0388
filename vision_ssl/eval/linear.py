"""Linear evaluation: a linear classifier per feature on a frozen pretrained encoder.

The encoder stays in ``eval()`` (BatchNorm statistics frozen) with gradients off; each requested
feature (``backbone``, and ``subnet`` for SelfCon) gets its own classifier, initialised N(0, 0.01)
with zero bias, trained by SGD (momentum 0.9, weight decay 0 in the reference protocols) with a
step schedule (x0.1 at epochs 60 and 80 of 100). With both features, ``ensemble`` (the mean of
the two classifiers' logits) is evaluated as well. Reported: top-1 / top-5 test accuracy (%) of
every epoch and the best top-1 over epochs (the protocol of MixCo and SelfCon).
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vision_ssl.config import LinearConfig
from vision_ssl.heads import linear_classifier
from vision_ssl.schedules import lr_lambda


class LinearProbe(L.LightningModule):
    """Linear classifiers on ``encoder.features(x)`` (``encoder`` is a pretrained method).

    Args:
        encoder: module with ``features(x) -> {name: [B, D]}`` and ``feature_dims()``.
        num_classes: number of classes.
        config: the ``linear`` section of the experiment config.
    """

    def __init__(self, encoder: nn.Module, num_classes: int, config: LinearConfig) -> None:
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)
        self.config = config
        dims = encoder.feature_dims()
        self.classifiers = nn.ModuleDict({name: linear_classifier(dims[name], num_classes) for name in config.features})
        self.heads = list(config.features) + (["ensemble"] if len(config.features) > 1 else [])
        self.register_buffer("best_top1", torch.zeros(len(self.heads)))
        self.register_buffer("best_epoch", torch.zeros(len(self.heads), dtype=torch.long))
        self._counts: Tensor | None = None
        self.last_accuracy: dict[str, tuple[float, float]] = {}  #: head -> (top1, top5) of the last epoch

    def train(self, mode: bool = True) -> LinearProbe:
        super().train(mode)
        self.encoder.eval()
        return self

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Logits of every head (and the ensemble)."""
        with torch.no_grad():
            feats = self.encoder.features(x)
        logits = {name: clf(feats[name].float()) for name, clf in self.classifiers.items()}
        if "ensemble" in self.heads:
            logits["ensemble"] = torch.stack([logits[n] for n in self.config.features]).mean(0)
        return logits

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = sum(F.cross_entropy(logits[name], y) for name in self.config.features)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(y))
        for name in self.config.features:
            self.log(f"train/top1_{name}", 100.0 * (logits[name].argmax(1) == y).float().mean(), batch_size=len(y))
        return loss

    def on_validation_epoch_start(self) -> None:
        self._counts = torch.zeros(len(self.heads), 3, device=self.device)  # top1, top5, total

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        for i, name in enumerate(self.heads):
            top = logits[name].topk(min(5, logits[name].shape[1]), dim=1).indices
            self._counts[i, 0] += (top[:, 0] == y).sum()
            self._counts[i, 1] += (top == y[:, None]).any(dim=1).sum()
            self._counts[i, 2] += len(y)

    def on_validation_epoch_end(self) -> None:
        counts = self.trainer.strategy.reduce(self._counts, reduce_op="sum")
        acc = 100.0 * counts[:, :2] / counts[:, 2:].clamp(min=1)
        for i, name in enumerate(self.heads):
            self.log(f"val/top1_{name}", acc[i, 0], sync_dist=False)
            self.log(f"val/top5_{name}", acc[i, 1], sync_dist=False)
            if acc[i, 0] > self.best_top1[i]:
                self.best_top1[i] = acc[i, 0]
                self.best_epoch[i] = self.current_epoch
        self.last_accuracy = {name: (acc[i, 0].item(), acc[i, 1].item()) for i, name in enumerate(self.heads)}

    def configure_optimizers(self):
        c = self.config
        optimizer = torch.optim.SGD(self.classifiers.parameters(), lr=c.lr, momentum=c.momentum,
                                    weight_decay=c.weight_decay, nesterov=c.nesterov)
        steps_per_epoch = max(1, self.trainer.estimated_stepping_batches // c.epochs)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(
            c.lr, c.epochs, steps_per_epoch, schedule="multistep", milestones=c.milestones, gamma=c.gamma))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
