"""Checkpoints that run code when unpickled, for the safe-loading tests of every loader.

``write_payload_checkpoint(path, marker)`` saves (with ``torch.save``) a dict whose unpickling
calls ``os.makedirs(marker)``: a loader that unpickles it fully creates the folder ``marker``;
a safe one refuses the file and ``marker`` never appears.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


class CodeRunner:
    """Pickles as a call of ``os.makedirs(marker)``."""

    def __init__(self, marker: str | Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def write_payload_checkpoint(path: str | Path, marker: str | Path, extra: dict[str, Any] | None = None,
                             key: str = "payload") -> Path:
    """Write ``{**extra, key: <code runner>}`` to ``path``; ``extra`` makes it look like the format
    under test (its keys and tensors), so the payload is what the loader meets first or last."""
    path = Path(path)
    torch.save({**(extra or {}), key: CodeRunner(marker)}, path)
    return path
