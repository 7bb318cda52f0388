"""SimCLR, optionally with MixCo semi-positives (``mixco.enabled``).

The two views (and, with MixCo, the mixes of each view's first and second halves, one lambda per
pair) go through the backbone and head. Loss: NT-Xent over the two views; with MixCo, plus
``beta`` times the mean of the two per-view soft-target terms, where the mixes of view 1 are
scored against view 2's projections only and vice versa (temperature ``tau_mix``). Under DDP every
term is computed on the global batch.

Forward passes (``model.single_pass``, see :class:`~vision_ssl.config.ModelConfig`): by default
plain SimCLR encodes both views in one pass (CD-FSL / SimCore reference code) and SimCLR + MixCo
encodes view 1, view 2 and the two mixes in four passes (MixCo reference code), which changes the
statistics of train-mode BatchNorm.
"""

from __future__ import annotations

from torch import Tensor

from vision_ssl.losses import mix_halves, mixco_simclr_loss, nt_xent_loss, sample_mix_lambda
from vision_ssl.methods.base import PretrainMethod


class SimCLR(PretrainMethod):
    """SimCLR (``method: simclr``) and SimCLR + MixCo (``mixco.enabled: true``)."""

    @property
    def reference_single_pass(self) -> bool:
        """MixCo's code encodes views and mixes one by one; the CD-FSL / SimCore SimCLR, both views at once."""
        return not self.config.mixco.enabled

    def project(self, x: Tensor) -> Tensor:
        """Projections ``head(backbone(x))``."""
        return self.head(self.backbone(x))

    def compute_loss(self, views: list[Tensor], labels: Tensor) -> dict[str, Tensor]:
        x1, x2 = views
        n = len(x1)
        mix = self.config.mixco
        batch = [x1, x2]
        if mix.enabled:
            lam1, lam2 = (sample_mix_lambda(n // 2, mix.lambda_dist, mix.lambda_alpha, x1.device) for _ in range(2))
            batch += [mix_halves(x1, lam1), mix_halves(x2, lam2)]
        z = self.encode_batches(self.project, batch)
        z1, z2 = self.gather_halves(z[0]), self.gather_halves(z[1])
        tau = self.config.contrast.temperature
        if not mix.enabled:
            return {"loss": nt_xent_loss(z1, z2, tau)}
        mixed1, mixed2 = self.gather(z[2]), self.gather(z[3])
        lam1, lam2 = self.gather(lam1, grads=False), self.gather(lam2, grads=False)
        return mixco_simclr_loss(z1, z2, mixed1, mixed2, lam1, lam2, tau, mix.tau_mix, mix.beta)
