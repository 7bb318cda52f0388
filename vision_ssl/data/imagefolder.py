"""ImageFolder layout: ``<root>/<split>/<class>/<image>`` (ImageNet after the usual val re-org,
the SimCore / CD-FSL datasets, the exported mini digits)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vision_ssl.data.base import LabeledImages, layout_error

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
LAYOUT = "<root>/<split>/<class>/<image>.{jpg,png,...} (one sub-folder per class)"


class ImageFolderDataset(LabeledImages):
    """Images of ``<root>/<split>`` labelled by their sorted class sub-folder.

    Args:
        root: dataset root (``split`` is a sub-folder of it; ``split=""`` reads ``root`` itself).
        split: ``train``, ``val``, ``test``, ...
        transform: applied to the RGB PIL image.
        name: dataset name used in error messages.
        layout: expected layout shown in error messages.
    """

    def __init__(self, root: str | Path, split: str = "train", transform: Callable | None = None,
                 name: str = "ImageFolder", layout: str = LAYOUT) -> None:
        folder = Path(root) / split
        if not folder.is_dir():
            raise layout_error(name, root, f"split folder '{folder}' does not exist", layout)
        classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
        if not classes:
            raise layout_error(name, root, f"no class sub-folders in '{folder}'", layout)
        items, targets = [], []
        for index, cls in enumerate(classes):
            files = sorted(p for p in (folder / cls).rglob("*") if p.suffix.lower() in IMG_EXTENSIONS)
            items += files
            targets += [index] * len(files)
        if not items:
            raise layout_error(name, root, f"no image files under '{folder}'", layout)
        super().__init__(items, targets, classes, transform)
