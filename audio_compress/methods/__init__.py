"""Speech distillation methods (STaR, ARMHuBERT, DistilHuBERT) and their registry.

Each method is a :class:`DistillMethod` subclass in its own module: which teacher layers it
consumes, its config checks and its loss for a batch.
:class:`~audio_compress.tasks.distill.DistillationTask` builds the one named by the config's
``method`` (``get_method(config.method)(config, student_config, teacher_layers)``) and delegates
to it. Adding a method means one module here plus its entry in :data:`METHODS`.

This package imports no model code at run time, so that the config (which takes its method names
from :data:`METHODS`) stays light.
"""

from __future__ import annotations

from audio_compress.methods.armhubert import ARMHuBERT
from audio_compress.methods.base import DistillMethod, default_teacher_layers
from audio_compress.methods.distilhubert import DistilHuBERT
from audio_compress.methods.star import STaR

#: method name (the config's ``method``) -> class, in the order the choices are listed
METHODS: dict[str, type[DistillMethod]] = {cls.name: cls for cls in (STaR, ARMHuBERT, DistilHuBERT)}


def get_method(name: str) -> type[DistillMethod]:
    """The method class registered as ``name``; ``ValueError`` naming the choices otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose one of {tuple(METHODS)}") from None


__all__ = ["ARMHuBERT", "METHODS", "DistilHuBERT", "DistillMethod", "STaR", "default_teacher_layers", "get_method"]
