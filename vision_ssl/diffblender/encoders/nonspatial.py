"""Non-spatial-token (attribute) encoder: one token from a global vector (colour palette, style).

A masked vector is replaced by a learned zero-initialised null vector in input space, then an
MLP gives one token (reference section 1.4). Parameter names follow the official layout.
"""

from __future__ import annotations

import torch
from torch import nn

from vision_ssl.diffblender.encoders import ConditionEncoder, mlp, register_encoder


@register_encoder("nonspatial", "vector")
class VectorEncoder(ConditionEncoder):
    """``{"vector": B x in_dim, "mask": B}`` -> B x 1 x token_dim."""

    def __init__(self, spec, config) -> None:
        super().__init__()
        if spec.in_dim <= 0:
            raise ValueError(f"vector modality needs in_dim > 0 in adapter.modalities, got {spec.in_dim}")
        self.in_dim = spec.in_dim
        self.linears = mlp(spec.in_dim, config.token_hidden, config.token_dim, norm=config.vector_norm)
        self.null_features = nn.Parameter(torch.zeros(spec.in_dim))

    def null_condition(self, batch_size, device, dtype):
        return {"vector": torch.zeros(batch_size, self.in_dim, device=device, dtype=dtype),
                "mask": torch.zeros(batch_size, device=device, dtype=dtype)}

    def forward(self, condition: dict[str, torch.Tensor]) -> torch.Tensor:
        vector, mask = condition["vector"], condition["mask"]
        if vector.ndim != 2 or vector.shape[1] != self.in_dim:
            raise ValueError(f"vector condition must be B x {self.in_dim}, got {tuple(vector.shape)}")
        vector = torch.where(mask.reshape(-1, 1).bool(), vector, self.null_features.to(vector.dtype))
        return self.linears(vector).unsqueeze(1)
