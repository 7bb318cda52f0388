"""File lists: a text file of ``path<TAB>label`` lines, one image per line (SimCore's target +
coreset training sets, open-set image lists). The split is the list file's name under the root."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from compact_ssl.io import atomic_path
from vision_ssl.data.base import LabeledImages, layout_error

LAYOUT = ("<root>/<list file>: one image per line, 'path<TAB>label' (label: integer class index, -1 for "
          "unlabelled images; relative paths are relative to <root>)")


def read_filelist(path: str | Path) -> tuple[list[str], list[int]]:
    """``(paths, labels)`` of a list file; malformed lines raise an error naming file and line."""
    path = Path(path)
    paths, labels = [], []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            name, sep, label = line.rpartition("\t")
            if not sep or not name or not label.lstrip("-").isdigit():
                raise ValueError(f"{path}:{number}: expected 'path<TAB>integer label', got {line!r}; fix or "
                                 "regenerate the list")
            paths.append(name)
            labels.append(int(label))
    return paths, labels


def write_filelist(path: str | Path, entries: Iterable[tuple[str | Path, int]]) -> int:
    """Write ``(path, label)`` entries atomically (temporary file, then rename); returns the count."""
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        for name, label in entries:
            f.write(f"{name}\t{int(label)}\n")
            count += 1
    return count


class FileListDataset(LabeledImages):
    """Images named in ``<root>/<split>``; classes ``"0" .. str(max label)``.

    Args:
        root: folder of the list (relative image paths are resolved against it).
        split: the list file's name (or a path relative to ``root``).
        transform: applied to the RGB PIL image.
    """

    def __init__(self, root: str | Path, split: str, transform: Callable | None = None) -> None:
        root = Path(root)
        listfile = root / split
        if not listfile.is_file():
            raise layout_error("filelist", root, f"list file '{listfile}' does not exist", LAYOUT)
        paths, labels = read_filelist(listfile)
        if not paths:
            raise layout_error("filelist", root, f"list file '{listfile}' has no entries", LAYOUT)
        items = [p if os.path.isabs(p) else str(root / p) for p in paths]
        super().__init__(items, labels, [str(c) for c in range(max(labels) + 1)], transform)
