"""Training wiring: run configuration, the Lightning module and the data module.

Exports resolve lazily, so that ``audio_cls.tasks.config`` (used by the feature-cache stage)
does not pay for importing Lightning.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "IcbhiConfig": "config", "METHODS": "config", "load_config": "config",
    "IcbhiDataModule": "datamodule",
    "IcbhiTask": "icbhi", "load_task": "icbhi", "task_from_checkpoint": "icbhi",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
