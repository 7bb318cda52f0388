"""Pretraining methods (LightningModules over a shared backbone and head) and their registry.

``build_method(config)`` instantiates the class named by ``config.method`` (for ``msl``, the
variant of ``cdfsl.ssl``) and, for a two-stage scheme, loads the first stage's weights from
``cdfsl.init_from``; ``load_pretrained(path)`` rebuilds a trained method from a Lightning
checkpoint in one call.
"""

from __future__ import annotations

from pathlib import Path

import torch

from compact_ssl.unpickle import LIGHTNING, load_untrusted
from vision_ssl.config import ExperimentConfig, config_from_dict
from vision_ssl.methods.base import PretrainMethod
from vision_ssl.methods.byol import BYOL
from vision_ssl.methods.cdfsl import MSL_CLASSES, SupervisedSource, init_from_checkpoint
from vision_ssl.methods.mocov2 import MoCoV2
from vision_ssl.methods.selfcon import SelfCon
from vision_ssl.methods.simclr import SimCLR
from vision_ssl.methods.supcon import SupCon

METHOD_CLASSES: dict[str, type[PretrainMethod]] = {"simclr": SimCLR, "mocov2": MoCoV2, "supcon": SupCon,
                                                   "selfcon": SelfCon, "sl": SupervisedSource, "byol": BYOL}


def method_class(config: ExperimentConfig) -> type[PretrainMethod]:
    """The LightningModule class of ``config.method`` (``msl``: by ``cdfsl.ssl``)."""
    if config.method == "msl":
        return MSL_CLASSES[config.cdfsl.ssl]
    return METHOD_CLASSES[config.method]


def build_method(config: ExperimentConfig) -> PretrainMethod:
    """The LightningModule of ``config.method``, freshly initialised or, with ``cdfsl.init_from``,
    starting from a first-stage checkpoint's backbone (+ classifier)."""
    model = method_class(config)(config)
    if config.cdfsl.init_from:
        loaded = init_from_checkpoint(model, config.cdfsl.init_from)
        print(f"{config.method}: {' + '.join(loaded)} initialised from {config.cdfsl.init_from}")
    return model


def load_pretrained(path: str | Path, map_location: str | torch.device = "cpu", trust: bool = False) -> PretrainMethod:
    """A pretrained method from a checkpoint written by ``vision_ssl.bin.pretrain``, in eval mode.

    The file is read without running code from it (``compact_ssl.unpickle``), since checkpoints get
    shared; ``trust=True`` unpickles fully.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found (run the pretraining stage first)")
    ckpt = load_untrusted(path, what="vision_ssl pretraining checkpoint", placeholders=LIGHTNING, trust=trust,
                          map_location=map_location)
    try:
        config = config_from_dict(ckpt["hyper_parameters"]["config"])
    except KeyError as err:
        raise ValueError(f"{path}: not a vision_ssl pretraining checkpoint (no hyper_parameters.config)") from err
    model = method_class(config)(config)
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


__all__ = ["BYOL", "METHOD_CLASSES", "MSL_CLASSES", "MoCoV2", "PretrainMethod", "SelfCon", "SimCLR", "SupCon",
           "SupervisedSource", "build_method", "init_from_checkpoint", "load_pretrained", "method_class"]
