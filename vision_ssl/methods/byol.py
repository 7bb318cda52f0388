"""BYOL as used by the CD-FSL schemes (``method: byol``; also the SSL term of ``msl``).

Online network = backbone + projector (``self.head``) + predictor; target network = an EMA copy
of backbone + projector, updated after every optimizer step with the constant momentum
``byol.ema`` (0.99). Projector and predictor are ``Linear -> BN -> ReLU -> Linear`` MLPs
(512->4096->256: 3,158,272 parameters; 256->4096->256: 2,109,696). Loss: the symmetric
``2 - 2 cos`` regression of each view's prediction onto the other view's target projection.
The target starts as a copy of the online network when training starts (after a two-stage
``cdfsl.init_from``, from the loaded weights); a resumed run keeps its saved target.

Like the reference code, online and target networks encode each view in its own forward pass, so
train-mode BatchNorm (backbone, projector, predictor) normalises each view with its own batch
statistics; ``model.single_pass: true`` encodes both views in one pass instead.
"""

from __future__ import annotations

import torch
from torch import Tensor

from compact_ssl.nn import ema_update
from vision_ssl.config import ExperimentConfig
from vision_ssl.heads import ProjectionHead
from vision_ssl.losses import byol_loss
from vision_ssl.methods.base import PretrainMethod, frozen_copy


class BYOL(PretrainMethod):
    """BYOL with a constant-momentum target network."""

    reference_single_pass = False  #: the CD-FSL code encodes each view alone (online and target)

    def __init__(self, config: ExperimentConfig | dict) -> None:
        super().__init__(config)
        b = self.config.byol
        self.predictor = ProjectionHead(b.out_dim, b.hidden_dim, b.out_dim, batch_norm=True)
        self.target_backbone = frozen_copy(self.backbone)
        self.target_head = frozen_copy(self.head)

    def make_head(self) -> ProjectionHead:
        """The projector (``byol.*``; the ``model.head_*`` settings do not apply)."""
        b = self.config.byol
        return ProjectionHead(self.backbone.out_dim, b.hidden_dim, b.out_dim, batch_norm=True)

    def predict(self, x: Tensor) -> Tensor:
        """Online predictions ``predictor(projector(backbone(x)))``."""
        return self.predictor(self.head(self.backbone(x)))

    def target_project(self, x: Tensor) -> Tensor:
        """Target projections (no gradient)."""
        with torch.no_grad():
            return self.target_head(self.target_backbone(x))

    def compute_loss(self, views: list[Tensor], labels: Tensor) -> dict[str, Tensor]:
        p1, p2 = self.encode_batches(self.predict, views)
        t1, t2 = self.encode_batches(self.target_project, views)
        return {"loss": byol_loss(p1, p2, t1, t2)}

    @torch.no_grad()
    def update_target(self) -> None:
        """``target = ema * target + (1 - ema) * online`` for backbone and projector parameters."""
        ema = self.config.byol.ema
        for online, target in ((self.backbone, self.target_backbone), (self.head, self.target_head)):
            ema_update(target, online, ema)

    @torch.no_grad()
    def reset_target(self) -> None:
        """Make the target an exact copy of the online backbone and projector."""
        self.target_backbone.load_state_dict(self.backbone.state_dict())
        self.target_head.load_state_dict(self.head.state_dict())

    def on_train_start(self) -> None:
        # global_step is 0 only for a fresh run; a resumed one has restored its own target
        if self.global_step == 0:
            self.reset_target()

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.update_target()
