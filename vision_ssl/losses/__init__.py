"""Contrastive, BYOL and mixed-supervised losses as pure functions of tensors (no model, no state)."""

from vision_ssl.losses.byol import byol_loss, linear_gamma, mixed_supervised_loss, regression_term
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
    "LAMBDA_DISTRIBUTIONS", "byol_loss", "linear_gamma", "mix_halves", "mixco_loss", "mixco_moco_loss",
    "mixco_simclr_loss", "mixco_soft_targets", "mixed_supervised_loss", "moco_logits", "moco_loss", "nt_xent_loss",
    "regression_term", "sample_mix_lambda", "selfcon_loss", "soft_target_cross_entropy", "supcon_loss",
]
