"""This toolkit's standalone student checkpoints: config as plain data plus the state dict.

File layout (a dict saved with ``torch.save``)::

    {"format": "compact-ssl-student", "version": 1, "name": str,
     "config": dataclasses.asdict(StudentConfig), "state_dict": {...}, "extra": dict | None}

Everything is plain Python types and tensors, so files load with
``torch.load(weights_only=True)``; ``extra`` must follow the same rule. Reading goes through
:func:`compact_ssl.unpickle.load_untrusted` (such files are shared), and loading is strict: the
stored config must describe exactly the stored weights. Released checkpoints of other layouts
are read by :mod:`audio_compress.models.released`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from audio_compress.models.config import StudentConfig
from audio_compress.models.student import StudentModel
from compact_ssl.io import atomic_write_with
from compact_ssl.nn import load_state_strictly
from compact_ssl.unpickle import load_untrusted

CHECKPOINT_FORMAT = "compact-ssl-student"
CHECKPOINT_VERSION = 1


def save_student(model: StudentModel, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` to ``path`` atomically (temporary file in the same folder, then rename).

    Returns the path written. ``extra`` holds caller metadata (plain types only).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "name": model.config.name,
        "config": asdict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": extra,
    }
    return atomic_write_with(path, lambda tmp: torch.save(payload, tmp))


def is_student_payload(obj: Any) -> bool:
    """Whether an unpickled object claims to be a checkpoint of this format (any version)."""
    return isinstance(obj, Mapping) and obj.get("format") == CHECKPOINT_FORMAT


def validate_student_payload(payload: Any, path: str | Path) -> dict[str, Any]:
    """Check the format marker and version of an unpickled checkpoint; returns it."""
    if not is_student_payload(payload):
        raise ValueError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint (missing or wrong 'format' key)")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: unsupported checkpoint version {payload.get('version')!r}, "
                         f"expected {CHECKPOINT_VERSION}")
    return payload


def read_student_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                            trust: bool = False) -> dict[str, Any]:
    """Load and validate the raw checkpoint dict (see the module docstring for its keys).

    ``trust=True`` unpickles fully (can run code): only for files from a trusted source.
    """
    payload = load_untrusted(path, what=f"{CHECKPOINT_FORMAT} checkpoint", trust=trust, map_location=map_location)
    return validate_student_payload(payload, path)


def student_from_payload(payload: dict[str, Any], path: str | Path) -> StudentModel:
    """Rebuild the student of a validated checkpoint dict from its config; weights load strictly."""
    model = StudentModel(StudentConfig.from_dict(payload["config"]))
    load_state_strictly(model, payload["state_dict"], path, "state_dict does not match the stored config")
    return model
