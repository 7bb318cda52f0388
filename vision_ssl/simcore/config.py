"""Coreset-sampling settings of a SimCore recipe (``egs/*/simcore/conf/coreset.yaml``), defaults
from reference 3.3: k 100, patience 20, stop threshold 0.95, budget 50 x |X|, at most 5000 epochs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from compact_ssl.config import load_yaml_config
from vision_ssl.simcore.budget import IMAGENET_TRAIN_SIZE

SAMPLERS = ("simcore", "random")


@dataclass
class CoresetConfig:
    """How the coreset is drawn and how long the pretraining on target + coreset runs."""

    method: str = "simcore"  #: simcore | random (uniform baseline)
    k: int = 100  #: k-means centroids of the target features
    stop: bool = True  #: stopping rule (budget budget_ratio x |X|); false: budget floor(sampling_ratio x |U|)
    patience: int = 20  #: round that sets the threshold
    threshold: float = 0.95  #: stop once a round's utility < threshold x utility of round ``patience``
    budget_ratio: float = 50.0
    sampling_ratio: float | None = None  #: without stop, and for the random baseline unless matched
    seed: int = 0  #: k-means, the random budget cut and the random baseline
    top_m: int | None = None  #: candidates kept per centroid (None: 2 x budget / k, at least 32)
    max_epochs: int = 5000  #: cap of the recomputed epochs
    epoch_reference: int = IMAGENET_TRAIN_SIZE  #: open-set size whose epochs the rule counts
    epoch_visits: int = 100  #: epochs of the reference open set
    #: 0.2 when the pretraining starts from an SSL checkpoint; applied after the max_epochs cap (reference order)
    epoch_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in SAMPLERS:
            raise ValueError(f"method must be one of {SAMPLERS}, got {self.method!r}")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")


def load_coreset_config(path: str | Path | None = None, overrides: list[str] | None = None) -> CoresetConfig:
    """Read a :class:`CoresetConfig` from YAML (or defaults) plus ``key=value`` overrides."""
    return load_yaml_config(CoresetConfig, path, overrides)
