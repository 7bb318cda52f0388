"""Standalone student checkpoints: config as plain data plus the state dict.

File layout (a dict saved with ``torch.save``)::

    {"format": "compact-ssl-student", "version": 1, "name": str,
     "config": dataclasses.asdict(StudentConfig), "state_dict": {...}, "extra": dict | None}

Everything is plain Python types and tensors, so files load with
``torch.load(weights_only=True)``; ``extra`` must follow the same rule.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from audio_compress.models.config import StudentConfig
from audio_compress.models.student import StudentModel
from compact_ssl.io import atomic_write_with

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


def read_student_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate the raw checkpoint dict (see the module docstring for its keys)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"student checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupt file, or a pickle that weights_only refuses
        raise ValueError(f"{path}: not a readable {CHECKPOINT_FORMAT} checkpoint ({err})") from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint (missing or wrong 'format' key)")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: unsupported checkpoint version {payload.get('version')!r}, "
                         f"expected {CHECKPOINT_VERSION}")
    return payload


def load_student(path: str | Path, map_location: str | torch.device = "cpu") -> StudentModel:
    """Rebuild the student stored at ``path`` from its config and load its weights strictly."""
    payload = read_student_checkpoint(path, map_location)
    model = StudentModel(StudentConfig.from_dict(payload["config"]))
    state_dict = payload["state_dict"]
    expected = set(model.state_dict())
    missing = sorted(expected - set(state_dict))
    unexpected = sorted(set(state_dict) - expected)
    if missing or unexpected:
        raise ValueError(f"{path}: state_dict does not match the stored config; "
                         f"missing keys: {missing}; unexpected keys: {unexpected}")
    model.load_state_dict(state_dict, strict=True)
    return model.to(map_location)
