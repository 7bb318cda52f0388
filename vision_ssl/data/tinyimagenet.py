"""Tiny ImageNet (200 classes, 64x64) in its distributed layout, read from local disk.

``<root>/tiny-imagenet-200/`` (or ``root`` itself) holds ``wnids.txt``,
``train/<wnid>/images/*.JPEG`` (500 per class) and ``val/images/*.JPEG`` labelled by
``val/val_annotations.txt`` (50 per class). The test split has no labels and is not offered.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vision_ssl.data.base import LabeledImages, layout_error

LAYOUT = ("<root>/tiny-imagenet-200/{wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG, "
          "val/val_annotations.txt} (tiny-imagenet-200.zip from http://cs231n.stanford.edu/, unpacked into <root>)")
SPLITS = ("train", "val")


class TinyImageNetDataset(LabeledImages):
    """Tiny ImageNet split ``train`` (100,000 images) or ``val`` (10,000)."""

    def __init__(self, root: str | Path, split: str = "train", transform: Callable | None = None) -> None:
        name, root = "TinyImageNet", Path(root)
        if split not in SPLITS:
            raise ValueError(f"{name}: unknown split {split!r}; choose one of {SPLITS} (test has no labels)")
        folder = root / "tiny-imagenet-200" if (root / "tiny-imagenet-200").is_dir() else root
        wnids_file = folder / "wnids.txt"
        if not wnids_file.is_file():
            raise layout_error(name, root, f"'{wnids_file}' not found", LAYOUT)
        classes = [line.strip() for line in wnids_file.read_text().splitlines() if line.strip()]
        index = {wnid: i for i, wnid in enumerate(classes)}
        items, targets = [], []
        if split == "train":
            for wnid in classes:
                files = sorted((folder / "train" / wnid / "images").glob("*.JPEG"))
                if not files:
                    raise layout_error(name, root, f"no images in '{folder / 'train' / wnid / 'images'}'", LAYOUT)
                items += files
                targets += [index[wnid]] * len(files)
        else:
            annotations = folder / "val" / "val_annotations.txt"
            if not annotations.is_file():
                raise layout_error(name, root, f"'{annotations}' not found", LAYOUT)
            for lineno, line in enumerate(annotations.read_text().splitlines(), 1):
                fields = line.split("\t")
                if len(fields) < 2 or fields[1] not in index:
                    raise layout_error(name, root, f"{annotations}:{lineno}: malformed line {line!r}", LAYOUT)
                items.append(folder / "val" / "images" / fields[0])
                targets.append(index[fields[1]])
        super().__init__(items, targets, classes, transform)
