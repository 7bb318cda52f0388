"""Trivial baselines of the results tables: chance level, a randomly initialised network of the
evaluated architecture, and raw pixels.

A baseline is evaluated by the same code as the methods (the linear probe and kNN monitor of
:mod:`vision_ssl.eval`, the episode updates of :mod:`vision_ssl.fewshot`); only the encoder
changes:

* ``random_init``: the method (or backbone) of the same config, freshly initialised from the
  run's seed and never trained;
* ``pixels``: :class:`PixelEncoder`, the input image flattened. The images arrive normalised by
  the evaluation transform exactly as the networks get them (per channel, ``(x - mean) / std``
  with the config's ``data.norm``: the dataset's statistics where known, else ImageNet's), so
  the probe sees standardised raw pixels at the evaluation size.

Chance is the accuracy of a uniform random guess, ``100 / num_classes`` (or ``100 / n_way`` for
episodes).
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn

#: baseline kinds, in table order
BASELINES: tuple[str, ...] = ("random_init", "pixels")

#: table label of each kind (and of the fixed episodes' raw-pixel nearest neighbour, ``fewshot_eval --pixel_nn``)
BASELINE_LABELS: dict[str, str] = {"random_init": "random-init network", "pixels": "raw pixels",
                                   "pixel_nn": "raw-pixel nearest neighbour"}


def chance_accuracy(num_classes: int) -> float:
    """Accuracy (%) of a uniform random guess among ``num_classes`` classes."""
    if num_classes < 1:
        raise ValueError(f"chance_accuracy needs at least one class, got {num_classes}")
    return 100.0 / num_classes


def check_kinds(kinds: list[str] | tuple[str, ...]) -> None:
    """Refuse unknown baseline names."""
    bad = [k for k in kinds if k not in BASELINES]
    if bad:
        raise ValueError(f"unknown baseline(s) {bad}; choose from {list(BASELINES)}")


class PixelEncoder(nn.Module):
    """The identity encoder: an image batch ``[B, C, S, S]`` becomes ``[B, C * S * S]``.

    Offers both interfaces of the evaluation code: ``features`` / ``feature_dims`` (the linear
    probe and kNN, feature ``backbone``) and ``forward`` / ``out_dim`` (few-shot episodes).
    It has no parameters, so every episode update reduces to training the new head.
    """

    def __init__(self, image_size: int, channels: int = 3) -> None:
        super().__init__()
        self.out_dim = channels * image_size * image_size

    def forward(self, x: Tensor) -> Tensor:
        """Flattened pixels ``[B, out_dim]``."""
        if x[0].numel() != self.out_dim:
            raise ValueError(f"PixelEncoder expects {self.out_dim} values per image, got {tuple(x.shape[1:])}")
        return x.flatten(1)

    def features(self, x: Tensor) -> dict[str, Tensor]:
        """``{"backbone": flattened pixels}``."""
        return {"backbone": self(x)}

    def feature_dims(self) -> dict[str, int]:
        """``{"backbone": out_dim}``."""
        return {"backbone": self.out_dim}


def module_device(module: nn.Module) -> torch.device:
    """Device of a module's first parameter or buffer (CPU for one with neither, e.g. :class:`PixelEncoder`)."""
    first = next(itertools.chain(module.parameters(), module.buffers()), None)
    return torch.device("cpu") if first is None else first.device
