"""Spatial-token (layout) encoders: boxes with phrase embeddings, and person keypoints.

Each slot becomes one token ``MLP([content; fourier(position)])``; padded slots (mask 0) use
learned, zero-initialised null vectors in place of both the content and the position code, and
stay in the sequence (reference section 1.3). As in the official encoders the mask blends,
``m x + (1 - m) null``, so a fractional mask gives a mixture. Parameter names follow the official
layout.
"""

from __future__ import annotations

import torch
from torch import nn

from vision_ssl.diffblender.encoders import ConditionEncoder, mlp, register_encoder


def fourier_embed(coords: torch.Tensor, num_freqs: int, temperature: float = 100.0) -> torch.Tensor:
    """Sin/cos codes of the last axis of ``coords`` (... x K) -> ... x (num_freqs * 2 * K).

    Frequencies are ``temperature ** (k / num_freqs)``, k = 0 .. num_freqs - 1; the element order
    is frequency, then sin/cos, then coordinate, as diffusers' ``get_fourier_embeds_from_boundingbox``
    lays it out.
    """
    freqs = temperature ** (torch.arange(num_freqs, device=coords.device, dtype=coords.dtype) / num_freqs)
    angles = freqs[:, None] * coords[..., None, :]  # ... x F x K
    codes = torch.stack((angles.sin(), angles.cos()), dim=-2)  # ... x F x 2 x K
    return codes.flatten(-3)


def blend_null(mask: torch.Tensor, value: torch.Tensor, null: torch.Tensor) -> torch.Tensor:
    """``m value + (1 - m) null`` with ``mask`` m (shape of ``value`` without its last axis).

    The official blend rather than a switch: a fractional mask mixes the condition with the null.
    """
    m = mask.unsqueeze(-1).to(value.dtype)
    return value * m + null.to(value.dtype) * (1 - m)


def _check(name: str, tensor: torch.Tensor, shape: tuple) -> None:
    if tuple(tensor.shape[1:]) != shape:
        raise ValueError(f"{name} must be B x {' x '.join(map(str, shape))}, got {tuple(tensor.shape)}")


@register_encoder("spatial", "box")
class BoxEncoder(ConditionEncoder):
    """``{"boxes": B x N x 4 (normalised xyxy), "phrase_embeds": B x N x text_dim, "mask": B x N}``
    -> B x N x token_dim, N = ``max_boxes``."""

    def __init__(self, spec, config) -> None:
        super().__init__()
        self.num_slots, self.text_dim, self.num_freqs = config.max_boxes, config.text_dim, config.fourier_freqs
        position_dim = config.fourier_freqs * 2 * 4
        self.linears = mlp(config.text_dim + position_dim, config.token_hidden, config.token_dim)
        self.null_text_feature = nn.Parameter(torch.zeros(config.text_dim))
        self.null_position_feature = nn.Parameter(torch.zeros(position_dim))

    def null_condition(self, batch_size, device, dtype):
        n = self.num_slots
        return {"boxes": torch.zeros(batch_size, n, 4, device=device, dtype=dtype),
                "phrase_embeds": torch.zeros(batch_size, n, self.text_dim, device=device, dtype=dtype),
                "mask": torch.zeros(batch_size, n, device=device, dtype=dtype)}

    def forward(self, condition: dict[str, torch.Tensor]) -> torch.Tensor:
        boxes, phrases, mask = condition["boxes"], condition["phrase_embeds"], condition["mask"]
        _check("box boxes", boxes, (self.num_slots, 4))
        _check("box phrase_embeds", phrases, (self.num_slots, self.text_dim))
        text = blend_null(mask, phrases, self.null_text_feature)
        position = blend_null(mask, fourier_embed(boxes, self.num_freqs), self.null_position_feature)
        return self.linears(torch.cat([text, position], dim=-1))


@register_encoder("spatial", "keypoint")
class KeypointEncoder(ConditionEncoder):
    """``{"points": B x P x K x 2 (normalised xy), "mask": B x P x K}`` -> B x (P K) x token_dim,
    P = ``max_persons``, K = ``num_keypoints``; content = person + keypoint-type embeddings."""

    def __init__(self, spec, config) -> None:
        super().__init__()
        self.persons, self.keypoints, self.num_freqs = config.max_persons, config.num_keypoints, config.fourier_freqs
        position_dim = config.fourier_freqs * 2 * 2
        self.person_embeddings = nn.Parameter(torch.zeros(config.max_persons, config.token_dim))
        self.keypoint_embeddings = nn.Parameter(torch.zeros(config.num_keypoints, config.token_dim))
        self.linears = mlp(config.token_dim + position_dim, config.token_hidden, config.token_dim)
        self.null_person_feature = nn.Parameter(torch.zeros(config.token_dim))
        self.null_xy_feature = nn.Parameter(torch.zeros(position_dim))

    def null_condition(self, batch_size, device, dtype):
        return {"points": torch.zeros(batch_size, self.persons, self.keypoints, 2, device=device, dtype=dtype),
                "mask": torch.zeros(batch_size, self.persons, self.keypoints, device=device, dtype=dtype)}

    def forward(self, condition: dict[str, torch.Tensor]) -> torch.Tensor:
        points, mask = condition["points"], condition["mask"]
        _check("keypoint points", points, (self.persons, self.keypoints, 2))
        batch = points.shape[0]
        content = (self.person_embeddings[:, None] + self.keypoint_embeddings[None]).flatten(0, 1)
        content = content.to(points.dtype).expand(batch, -1, -1)
        mask = mask.reshape(batch, -1)
        person = blend_null(mask, content, self.null_person_feature)
        position = blend_null(mask, fourier_embed(points.reshape(batch, -1, 2), self.num_freqs), self.null_xy_feature)
        return self.linears(torch.cat([person, position], dim=-1))
