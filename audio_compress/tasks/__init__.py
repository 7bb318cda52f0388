"""Distillation wiring: the run configuration, the data module and the Lightning module.

* :mod:`.config`: :class:`DistillConfig` (read from the recipe's YAML) and its sections,
  :func:`load_config` (``DistillConfig.load``; ``config.save(path)`` writes it), the method names :data:`METHODS`;
* :mod:`.datamodule`: :class:`DistillDataModule` (waveform batches, optionally with dumped
  teacher targets);
* :mod:`.distill`: :class:`DistillationTask` (student + frozen teacher + the method of
  :mod:`audio_compress.methods`), :func:`warmup_linear_decay`.

Exports resolve lazily, so that ``audio_compress.tasks.config`` (read by the dump entry point)
does not pay for importing the models and Lightning modules.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "DataConfig": "config", "DistillConfig": "config", "LossConfig": "config", "METHODS": "config",
    "OptimConfig": "config", "TrainerConfig": "config", "load_config": "config",
    "DistillDataModule": "datamodule",
    "DistillationTask": "distill", "warmup_linear_decay": "distill",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
