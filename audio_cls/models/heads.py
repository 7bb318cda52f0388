"""Classification head and contrastive projector on top of the AST feature."""

from __future__ import annotations

from torch import nn


class Classifier(nn.Sequential):
    """AST's ``mlp_head``: LayerNorm then Linear (4,612 parameters for 768 -> 4)."""

    def __init__(self, hidden_size: int, num_classes: int):
        super().__init__(nn.LayerNorm(hidden_size), nn.Linear(hidden_size, num_classes))


class Projector(nn.Sequential):
    """Linear -> BatchNorm1d -> ReLU -> Linear (1,182,720 parameters for 768 -> 768)."""

    def __init__(self, hidden_size: int, out_dim: int):
        super().__init__(
            nn.Linear(hidden_size, hidden_size), nn.BatchNorm1d(hidden_size), nn.ReLU(inplace=True),
            nn.Linear(hidden_size, out_dim),
        )
