"""Stop a run as soon as a loss or a monitored metric stops being finite."""

from __future__ import annotations

import math

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

#: What a user can do about a non-finite loss, whatever the method.
ADVICE = ("lower the learning rate, use precision 32-true or bf16-mixed instead of 16-mixed, "
          "or check the data of this batch")


class NonFiniteLossError(RuntimeError):
    """Raised to stop training when a loss (training or validation) becomes NaN or infinite."""


def check_finite_loss(loss: Tensor, step: int, context: str = "") -> None:
    """Raise :class:`NonFiniteLossError` when the training ``loss`` is NaN or infinite.

    ``context`` (e.g. the batch's first utterance ids) is added to the message.
    """
    if not torch.isfinite(loss).all():
        where = f" ({context})" if context else ""
        raise NonFiniteLossError(f"non-finite training loss ({loss.detach().float().mean().item()}) at step {step}"
                                 f"{where}; {ADVICE}")


class NonFiniteMetricGuard(Callback):
    """Stops the run when a validation metric is NaN or infinite.

    Runs before every checkpoint callback (Lightning orders those last), so no checkpoint is
    ever written, nor selected as best, with a non-finite monitored value.

    Args:
        prefixes: metric names checked (those starting with any of them).
    """

    def __init__(self, prefixes: tuple[str, ...] = ("val",)) -> None:
        self.prefixes = prefixes

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        bad = {k: float(v) for k, v in trainer.callback_metrics.items()
               if k.startswith(self.prefixes) and not math.isfinite(float(v))}
        if bad:
            raise NonFiniteLossError(
                f"non-finite validation metrics {bad} at step {trainer.global_step} (epoch {trainer.current_epoch}); "
                f"no checkpoint was written for this evaluation; {ADVICE}")
