"""Atomic file and folder writes: a reader never sees a half-written output, an interruption
never leaves one.

Everything is written to a temporary file (or folder) beside the destination and renamed into
place (``os.replace`` is atomic on POSIX within one file system). A later recipe stage must never
take a half-written output for its own: a previous destination is replaced only once the new one
is complete, and stays as it was when the writer fails.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` when the block succeeds,
    delete it when the block raises. For writers that want a file name (torch.save, savefig)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_with(path: str | Path, writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp_path)`` and rename the result onto ``path`` (e.g. ``torch.save``)."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_json(path: str | Path, data: Any, indent: int = 2) -> Path:
    """Write ``data`` as JSON atomically (a trailing newline, keys in insertion order)."""
    return atomic_write_text(path, json.dumps(data, indent=indent) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file; a missing or malformed file raises an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); delete it and rerun the step that writes it") from err


def replace_folder(src: str | Path, dst: str | Path) -> Path:
    """Move the folder ``src`` onto ``dst`` (same parent file system); returns ``dst``.

    A previous ``dst`` is renamed aside first and deleted only once ``src`` is in place (put back
    if that rename fails), so ``dst`` is at any moment the old folder, the new one, or, between
    the two renames, absent; never a mix of both.
    """
    src, dst = Path(src), Path(dst)
    if not dst.exists():
        os.replace(src, dst)
        return dst
    aside = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old", dir=dst.parent))
    os.replace(dst, aside / dst.name)
    try:
        os.replace(src, dst)
    except BaseException:
        os.replace(aside / dst.name, dst)
        aside.rmdir()
        raise
    shutil.rmtree(aside, ignore_errors=True)
    return dst


@contextmanager
def staged_folder(folder: str | Path) -> Iterator[Path]:
    """Yield a new, empty temporary sibling of ``folder`` to write into; when the block succeeds
    it replaces ``folder`` (:func:`replace_folder`), when it raises it is deleted and ``folder``
    is left as it was. Raises :class:`NotADirectoryError` before anything is written when ``folder``
    is an existing file: a previous folder is replaced, a user's file is not."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder} is a file, not a folder: give a folder path for the output "
                                 "(or move the file away)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp", dir=folder.parent))
    try:
        yield tmp
        replace_folder(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
