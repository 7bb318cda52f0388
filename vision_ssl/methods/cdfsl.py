"""Pretraining schemes of "Understanding Cross-Domain Few-Shot Learning" beyond plain SSL.

* ``method: sl``: cross-entropy of a linear classifier on the labeled source (``data.*``, one
  view per image).
* ``method: msl``: ``(1 - gamma) CE(source) + gamma SSL(target)`` per step, SSL = SimCLR or BYOL
  (``cdfsl.ssl``) on two views of the unlabeled target (``data.*``); the source batch comes from
  ``cdfsl.source_*`` (see :class:`vision_ssl.data.mixed.MixedDataModule`). Source and
  target go through the backbone in separate forward passes, so the CE term is exactly the SL
  loss of the same source batch. ``cdfsl.gamma_schedule: linear`` ramps gamma from 0 at the
  first optimizer step to 1 at the last.
* Two-stage schemes: any method with ``cdfsl.init_from`` starts from a first-stage checkpoint
  (:func:`init_from_checkpoint`: backbone, plus the classifier when both models have one).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from compact_ssl.unpickle import LIGHTNING, load_untrusted
from vision_ssl.config import ExperimentConfig, config_from_dict
from vision_ssl.data import build_dataset
from vision_ssl.losses import linear_gamma, mixed_supervised_loss
from vision_ssl.methods.base import PretrainMethod
from vision_ssl.methods.byol import BYOL
from vision_ssl.methods.simclr import SimCLR


def source_split(config: ExperimentConfig) -> tuple[str, str, str]:
    """``(dataset, root, split)`` of the labeled source: ``data.*`` for sl, ``cdfsl.source_*`` for msl."""
    if config.method == "sl":
        return config.data.dataset, config.data.root, config.data.train_split
    c = config.cdfsl
    return c.source_dataset, c.source_root, c.source_split


def with_source_classes(config: ExperimentConfig) -> ExperimentConfig:
    """``config`` with ``cdfsl.num_classes`` filled in from the source dataset when it is 0."""
    if config.cdfsl.num_classes > 0:
        return config
    classes = build_dataset(*source_split(config)).classes
    return replace(config, cdfsl=replace(config.cdfsl, num_classes=len(classes)))


class SourceClassifier(PretrainMethod):
    """Adds the linear source classifier ``classifier`` (default ``nn.Linear`` init) and its CE."""

    def __init__(self, config: ExperimentConfig | dict) -> None:
        if isinstance(config, dict):
            config = config_from_dict(config)
        # resolved before the base class saves the config, so checkpoints rebuild without data
        super().__init__(with_source_classes(config))
        self.classifier = nn.Linear(self.backbone.out_dim, self.config.cdfsl.num_classes)

    def classification_loss(self, x: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """``{"ce": cross-entropy, "acc": batch accuracy}`` of the source images ``x``."""
        logits = self.classifier(self.backbone(x))
        with torch.no_grad():
            acc = (logits.argmax(dim=1) == labels).float().mean()
        return {"ce": F.cross_entropy(logits, labels), "acc": acc}


class SupervisedSource(SourceClassifier):
    """SL (``method: sl``): CE on the labeled source, no projection head."""

    def make_head(self) -> nn.Module:
        return nn.Identity()

    def compute_loss(self, views: list[Tensor], labels: Tensor) -> dict[str, Tensor]:
        out = self.classification_loss(views[0], labels)
        return {"loss": out["ce"], "acc": out["acc"]}


class MixedSupervised(SourceClassifier):
    """MSL on top of an SSL method (combined by :data:`MSL_CLASSES`; not instantiated alone).

    Training batches are ``{"target": (views, _), "source": ([x], labels)}``; :meth:`compute_loss`
    receives ``views = [target view 1, target view 2, source images]`` and the source labels.
    """

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        target_views, _ = batch["target"]
        source_views, source_labels = batch["source"]
        return super().training_step(([*target_views, *source_views], source_labels), batch_idx)

    def gamma(self) -> float:
        """Weight of the SSL term at the current optimizer step."""
        c = self.config.cdfsl
        if c.gamma_schedule == "linear":
            return linear_gamma(self.global_step, int(self.trainer.estimated_stepping_batches))
        return c.gamma

    def compute_loss(self, views: list[Tensor], labels: Tensor) -> dict[str, Tensor]:
        *target_views, source = views
        sup = self.classification_loss(source, labels)
        ssl = super().compute_loss(target_views, labels)["loss"]
        gamma = self.gamma()
        return {"loss": mixed_supervised_loss(sup["ce"], ssl, gamma), "ce": sup["ce"], "ssl": ssl,
                "acc": sup["acc"], "gamma": torch.tensor(gamma)}


class MSLSimCLR(MixedSupervised, SimCLR):
    """MSL with SimCLR on the target (``method: msl``, ``cdfsl.ssl: simclr``)."""


class MSLBYOL(MixedSupervised, BYOL):
    """MSL with BYOL on the target (``method: msl``, ``cdfsl.ssl: byol``)."""


MSL_CLASSES: dict[str, type[MixedSupervised]] = {"simclr": MSLSimCLR, "byol": MSLBYOL}

#: first-stage weights carried into the second stage
STAGE_ONE_PREFIXES = ("backbone.", "classifier.")


def init_from_checkpoint(model: PretrainMethod, path: str | Path) -> list[str]:
    """Load the backbone (and, when both models have one, the classifier) of the first-stage
    checkpoint ``path`` into ``model``; returns the loaded module names. Everything else (heads,
    optimizer, schedule) starts fresh."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: first-stage checkpoint (cdfsl.init_from) not found; run the first stage "
                                "(e.g. the sl scheme) or fix the path")
    state = load_untrusted(path, what="first-stage checkpoint", placeholders=LIGHTNING).get("state_dict")
    if state is None:
        raise ValueError(f"{path}: not a Lightning checkpoint (no state_dict); cdfsl.init_from needs a checkpoint "
                         "written by vision_ssl.bin.pretrain")
    own = model.state_dict()
    missing = [k for k in own if k.startswith("backbone.") and k not in state]
    if missing:
        raise ValueError(f"{path}: the checkpoint lacks backbone weights {missing[:3]}...; was it trained with "
                         f"model.backbone {model.config.model.backbone!r}?")
    take = {k: v for k, v in state.items() if k.startswith(STAGE_ONE_PREFIXES) and k in own}
    wrong = [k for k, v in take.items() if v.shape != own[k].shape]
    if wrong:
        raise ValueError(f"{path}: shapes of {wrong} differ from this model's (another backbone or number of "
                         "source classes?)")
    model.load_state_dict(take, strict=False)
    return sorted({k.split(".")[0] for k in take})
