"""Non-spatial-token (attribute) encoder: one token from a global vector (colour palette, style).

A masked vector is replaced by a learned zero-initialised null vector in input space (blended by
the mask, ``m v + (1 - m) null``, as the official encoder does), then an MLP gives one token
(reference section 1.4). The official vector encoder also has input switches, set per modality
(:class:`~vision_ssl.diffblender.config.ModalitySpec`): ``scale`` multiplies the vector and
``fourier_freqs`` > 0 replaces it by its Fourier code (frequencies ``temperature ** (k / F)``, the
box code's layout), F sin/cos pairs per element; both are off by default. Parameter names follow
the official layout.
"""

from __future__ import annotations

import torch
from torch import nn

from vision_ssl.diffblender.encoders import ConditionEncoder, mlp, register_encoder
from vision_ssl.diffblender.encoders.spatial import blend_null, fourier_embed


@register_encoder("nonspatial", "vector")
class VectorEncoder(ConditionEncoder):
    """``{"vector": B x in_dim, "mask": B}`` -> B x 1 x token_dim."""

    def __init__(self, spec, config) -> None:
        super().__init__()
        if spec.in_dim <= 0:
            raise ValueError(f"vector modality needs in_dim > 0 in adapter.modalities, got {spec.in_dim}")
        self.in_dim = spec.in_dim
        self.fourier_freqs, self.temperature, self.scale = spec.fourier_freqs, spec.temperature, spec.scale
        feature_dim = spec.in_dim * 2 * spec.fourier_freqs if spec.fourier_freqs else spec.in_dim
        self.linears = mlp(feature_dim, config.token_hidden, config.token_dim, norm=config.vector_norm)
        self.null_features = nn.Parameter(torch.zeros(spec.in_dim))

    def null_condition(self, batch_size, device, dtype):
        return {"vector": torch.zeros(batch_size, self.in_dim, device=device, dtype=dtype),
                "mask": torch.zeros(batch_size, device=device, dtype=dtype)}

    def features(self, vector: torch.Tensor) -> torch.Tensor:
        """The MLP input of a (null-blended) B x in_dim vector: scaled, Fourier-coded if enabled."""
        vector = self.scale * vector
        return fourier_embed(vector, self.fourier_freqs, self.temperature) if self.fourier_freqs else vector

    def forward(self, condition: dict[str, torch.Tensor]) -> torch.Tensor:
        vector, mask = condition["vector"], condition["mask"]
        if vector.ndim != 2 or vector.shape[1] != self.in_dim:
            raise ValueError(f"vector condition must be B x {self.in_dim}, got {tuple(vector.shape)}")
        vector = blend_null(mask.reshape(-1), vector, self.null_features)
        return self.linears(self.features(vector)).unsqueeze(1)
