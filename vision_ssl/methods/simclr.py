"""SimCLR, optionally with MixCo semi-positives (``mixco.enabled``).

Both views (and, with MixCo, the mixes of each view's first and second halves, one lambda per
pair) go through the backbone and head in one forward pass. Loss: NT-Xent over the two views; with
MixCo, plus ``beta`` times the mean of the two per-view soft-target terms, where the mixes of view
1 are scored against view 2's projections only and vice versa (temperature ``tau_mix``).
Under DDP every term is computed on the global batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vision_ssl.losses import mix_halves, mixco_simclr_loss, nt_xent_loss, sample_mix_lambda
from vision_ssl.methods.base import PretrainMethod


class SimCLR(PretrainMethod):
    """SimCLR (``method: simclr``) and SimCLR + MixCo (``mixco.enabled: true``)."""

    def compute_loss(self, views: list[Tensor], labels: Tensor) -> dict[str, Tensor]:
        x1, x2 = views
        n = len(x1)
        mix = self.config.mixco
        batch = [x1, x2]
        if mix.enabled:
            lam1, lam2 = (sample_mix_lambda(n // 2, mix.lambda_dist, mix.lambda_alpha, x1.device) for _ in range(2))
            batch += [mix_halves(x1, lam1), mix_halves(x2, lam2)]
        z = self.head(self.backbone(torch.cat(batch)))
        z1, z2 = self.gather_halves(z[:n]), self.gather_halves(z[n:2 * n])
        tau = self.config.contrast.temperature
        if not mix.enabled:
            return {"loss": nt_xent_loss(z1, z2, tau)}
        mixed1, mixed2 = self.gather(z[2 * n:2 * n + n // 2]), self.gather(z[2 * n + n // 2:])
        lam1, lam2 = self.gather(lam1, grads=False), self.gather(lam2, grads=False)
        return mixco_simclr_loss(z1, z2, mixed1, mixed2, lam1, lam2, tau, mix.tau_mix, mix.beta)
