"""Modality encoders of DiffBlender, one registry per category.

A category fixes how an encoder's output enters the UNet (reference section 1):

- ``image``: a feature map per UNet down block, added to the encoder features (adapter path);
- ``spatial``: tokens with a position, attended by the gated self-attention after each
  self-attention (layout);
- ``nonspatial``: global tokens, fused into the text tokens before each cross-attention.

A new modality plugs in by registering an encoder class for one of the three categories::

    @register_encoder("nonspatial", "my_vector")
    class MyEncoder(ConditionEncoder): ...

and naming it in :class:`~vision_ssl.diffblender.config.AdapterConfig.modalities`. Encoders are
built as ``cls(spec, config)`` and implement :meth:`ConditionEncoder.null_condition` (the raw
input of an absent condition, mask 0) and ``forward(condition) -> tokens`` (image encoders:
``forward(latent) -> list of feature maps``).
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from vision_ssl.diffblender.config import AdapterConfig, ModalitySpec

ENCODERS: dict[str, dict[str, type[ConditionEncoder]]] = {"image": {}, "spatial": {}, "nonspatial": {}}


class ConditionEncoder(nn.Module, abc.ABC):
    """Base of every modality encoder (subclasses implement :meth:`null_condition` and ``forward``)."""

    @abc.abstractmethod
    def null_condition(self, batch_size: int, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """The raw condition of ``batch_size`` absent samples (zeros, mask 0)."""


def register_encoder(category: str, name: str):
    """Class decorator adding an encoder to ``ENCODERS[category][name]``."""
    if category not in ENCODERS:
        raise ValueError(f"unknown encoder category {category!r}; choose one of {sorted(ENCODERS)}")

    def add(cls: type[ConditionEncoder]) -> type[ConditionEncoder]:
        if name in ENCODERS[category]:
            raise ValueError(f"encoder {category}/{name} is already registered")
        ENCODERS[category][name] = cls
        return cls

    return add


def build_encoder(spec: ModalitySpec, config: AdapterConfig) -> ConditionEncoder:
    """Instantiate the encoder ``spec`` names."""
    known = ENCODERS[spec.category]
    if spec.encoder not in known:
        raise ValueError(f"no {spec.category} encoder named {spec.encoder!r}; registered: {sorted(known)}")
    return known[spec.encoder](spec, config)


def mlp(in_dim: int, hidden: int, out_dim: int, norm: bool = False) -> nn.Sequential:
    """The three-layer SiLU MLP of the token encoders (optional LayerNorm after each hidden layer)."""
    layers: list[Any] = []
    for a, b in ((in_dim, hidden), (hidden, hidden)):
        layers += [nn.Linear(a, b)] + ([nn.LayerNorm(b)] if norm else []) + [nn.SiLU()]
    return nn.Sequential(*layers, nn.Linear(hidden, out_dim))


# register the built-in encoders
from vision_ssl.diffblender.encoders import image_form, nonspatial, spatial  # noqa: E402,F401
