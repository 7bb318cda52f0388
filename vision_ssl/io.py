"""Small file helpers shared by every layer (no heavy imports)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_json(path: str | Path, data: dict) -> None:
    """Write ``data`` as JSON through a temporary file and a rename (never a half-written file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
