"""A folder of prepared conditions (palettes, style embeddings, parsed annotation indexes), so
that the expensive preparation runs once.

Each entry is ``<folder>/<name>.pt`` holding ``{"params": <json text>, "payload": ...}``; an
entry whose recorded parameters differ from the requested ones (other source files, palette
settings, CLIP model, ...) counts as absent and is rebuilt. Entries are written to a temporary
file and renamed, so an interrupted preparation never leaves a half-written entry. Payloads are
tensors, lists, dicts, strings and numbers (loaded with ``weights_only=True``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from compact_ssl.io import atomic_write_with


def _canonical(params: dict) -> str:
    return json.dumps(params, sort_keys=True, default=str)


class ConditionCache:
    """Prepared-condition entries under ``folder`` (created on the first save)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def path(self, name: str) -> Path:
        """File of entry ``name``."""
        return self.folder / f"{name}.pt"

    def load(self, name: str, params: dict) -> Any | None:
        """The payload of ``name`` if it exists and was made with ``params``; else None."""
        path = self.path(name)
        if not path.is_file():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # a truncated or foreign file: say which, and how to recover
            raise OSError(f"{path}: cannot read cache entry ({err}); delete it and run the preparation again") from err
        if not isinstance(entry, dict) or entry.get("params") != _canonical(params):
            return None
        return entry["payload"]

    def save(self, name: str, params: dict, payload: Any) -> Path:
        """Store ``payload`` under ``name`` with its ``params`` (atomically) and return the file."""
        entry = {"params": _canonical(params), "payload": payload}
        return atomic_write_with(self.path(name), lambda tmp: torch.save(entry, tmp))
