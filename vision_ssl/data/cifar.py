"""CIFAR-10 / CIFAR-100 from their "python version" archives, read from local disk.

CIFAR-10: ``<root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``;
CIFAR-100: ``<root>/cifar-100-python/{train, test, meta}`` (fine labels). ``root`` may also be
the inner folder itself. Images are kept in memory as uint8 arrays.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from vision_ssl.data.base import LabeledImages, layout_error

_SPEC = {
    10: ("cifar-10-batches-py", {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
         "batches.meta", "label_names", "labels"),
    100: ("cifar-100-python", {"train": ["train"], "test": ["test"]}, "meta", "fine_label_names", "fine_labels"),
}


def cifar_layout(num_classes: int) -> str:
    """Expected on-disk layout of CIFAR-``num_classes``."""
    folder, splits, meta, _, _ = _SPEC[num_classes]
    files = ", ".join([*splits["train"], *splits["test"], meta])
    return (f"<root>/{folder}/{{{files}}} (cifar-{num_classes}-python.tar.gz from "
            f"https://www.cs.toronto.edu/~kriz/cifar.html, unpacked into <root>)")


def _unpickle(path: Path, name: str, root: Path, layout: str) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except (OSError, pickle.UnpicklingError, EOFError) as err:
        raise layout_error(name, root, f"cannot read '{path}' ({err})", layout) from err


class CIFARDataset(LabeledImages):
    """CIFAR-10 or CIFAR-100, split ``train`` (50,000 images) or ``test`` (10,000)."""

    def __init__(self, root: str | Path, split: str = "train", transform: Callable | None = None,
                 num_classes: int = 10) -> None:
        if num_classes not in _SPEC:
            raise ValueError(f"CIFAR has 10 or 100 classes, got {num_classes}")
        folder_name, splits, meta_name, names_key, labels_key = _SPEC[num_classes]
        name, layout, root = f"CIFAR-{num_classes}", cifar_layout(num_classes), Path(root)
        if split not in splits:
            raise ValueError(f"{name}: unknown split {split!r}; choose one of {sorted(splits)}")
        folder = root / folder_name if (root / folder_name).is_dir() else root
        missing = [f for f in [*splits[split], meta_name] if not (folder / f).is_file()]
        if missing:
            raise layout_error(name, root, f"missing {missing} in '{folder}'", layout)
        data, labels = [], []
        for file in splits[split]:
            batch = _unpickle(folder / file, name, root, layout)
            data.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels += list(batch[labels_key])
        classes = list(_unpickle(folder / meta_name, name, root, layout)[names_key])
        self.data = np.concatenate(data)
        super().__init__(list(range(len(self.data))), [int(y) for y in labels], classes, transform)

    def load(self, index: int) -> Image.Image:
        return Image.fromarray(self.data[index])
