"""Contrastive losses as pure functions of tensors (no model, no state)."""

from vision_ssl.losses.contrastive import moco_logits, moco_loss, nt_xent_loss
from vision_ssl.losses.mixco import (
    LAMBDA_DISTRIBUTIONS,
    mix_halves,
    mixco_loss,
    mixco_moco_loss,
    mixco_simclr_loss,
    mixco_soft_targets,
    sample_mix_lambda,
    soft_target_cross_entropy,
)
from vision_ssl.losses.supcon import selfcon_loss, supcon_loss

__all__ = [
    "LAMBDA_DISTRIBUTIONS", "mix_halves", "mixco_loss", "mixco_moco_loss", "mixco_simclr_loss",
    "mixco_soft_targets", "moco_logits", "moco_loss", "nt_xent_loss", "sample_mix_lambda",
    "selfcon_loss", "soft_target_cross_entropy", "supcon_loss",
]
