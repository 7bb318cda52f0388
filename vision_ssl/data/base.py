"""What every image dataset of the package shares: (image, label) items and layout errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import Dataset


class DatasetLayoutError(FileNotFoundError):
    """A dataset root is missing or not in the expected on-disk layout."""


def layout_error(name: str, root: str | Path, problem: str, layout: str) -> DatasetLayoutError:
    """Error naming the dataset, the root, what is wrong and the layout that was expected."""
    return DatasetLayoutError(f"{name} at '{root}': {problem}.\n  Expected layout: {layout}")


def load_rgb(path: str | Path) -> Image.Image:
    """Open an image file as RGB; unreadable files raise an error naming the file."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except OSError as err:
        raise OSError(f"{path}: cannot read image ({err}); delete or replace the file") from err


class LabeledImages(Dataset):
    """Base for the readers: ``items[i]`` is an image source (path or array), ``targets[i]`` its
    class index, ``classes`` the class names; ``__getitem__`` gives ``(transform(image), label)``."""

    def __init__(self, items: list[Any], targets: list[int], classes: list[str],
                 transform: Callable | None = None) -> None:
        self.items, self.targets, self.classes, self.transform = items, targets, classes, transform

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> Image.Image:
        """The untransformed RGB image ``index`` (file paths by default)."""
        return load_rgb(self.items[index])

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = self.load(index)
        return (self.transform(image) if self.transform else image), self.targets[index]
