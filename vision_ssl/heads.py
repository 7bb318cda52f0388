"""Projection heads and the linear classifier of the evaluation protocol.

:class:`ProjectionHead` is the two-layer MLP of SimCLR / MoCo v2 / SupCon / SelfCon
(``in -> hidden -> ReLU -> out``, 512->512->128: 328,320 parameters) and, with
``batch_norm=True``, the BYOL projector / predictor layout (``Linear -> BN -> ReLU -> Linear``;
512->4096->256: 3,158,272 parameters).
"""

from __future__ import annotations

from torch import Tensor, nn


class ProjectionHead(nn.Module):
    """Two-layer MLP projection head.

    Args:
        in_dim: input feature width (the backbone's ``out_dim``).
        hidden_dim: hidden width.
        out_dim: projection width.
        batch_norm: BatchNorm1d after the hidden linear layer (BYOL-style heads).
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, batch_norm: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim)]
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers += [nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)]
        self.net = nn.Sequential(*layers)
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def linear_classifier(in_dim: int, num_classes: int) -> nn.Linear:
    """Linear-evaluation classifier initialised as in MoCo's protocol: weights N(0, 0.01), bias 0."""
    fc = nn.Linear(in_dim, num_classes)
    nn.init.normal_(fc.weight, mean=0.0, std=0.01)
    nn.init.zeros_(fc.bias)
    return fc
