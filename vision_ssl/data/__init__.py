"""Image datasets read from local disk, behind one registry.

``build_dataset(name, root, split, transform)`` returns a dataset of ``(image, label)`` pairs
(with ``.targets`` and ``.classes``); a missing or malformed root raises
:class:`DatasetLayoutError` naming the expected layout and where to download the data.

================  ===============  =================================================================
name              splits           layout under ``root``
================  ===============  =================================================================
``cifar10``       train, test      ``cifar-10-batches-py/`` (python version)
``cifar100``      train, test      ``cifar-100-python/`` (python version, fine labels)
``tinyimagenet``  train, val       ``tiny-imagenet-200/`` as distributed
``imagenet``      train, val       ``{train,val}/<wnid>/*.JPEG`` (val re-organised into folders)
``imagefolder``   any sub-folder   ``<split>/<class>/<image>``
``filelist``      any list file    ``<split>``: ``path<TAB>label`` lines (SimCore target + coreset)
CD-FSL targets    unlabeled,       ``miniimagenet``, ``tieredimagenet``, ``cropdisease``, ``eurosat``,
                  labeled, all     ``isic``, ``chestx``, ``cub``, ``cars``, ``places``, ``plantae``,
                                   ``folder`` (see :mod:`vision_ssl.data.cdfsl`)
================  ===============  =================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vision_ssl.augment import IMAGENET_MEAN, IMAGENET_STD
from vision_ssl.data.base import DatasetLayoutError, LabeledImages, layout_error, load_rgb
from vision_ssl.data.cdfsl import CDFSL_LAYOUTS, CDFSLDataset
from vision_ssl.data.cifar import CIFARDataset, cifar_layout
from vision_ssl.data.digits import export_digits
from vision_ssl.data.filelist import LAYOUT as FILELIST_LAYOUT
from vision_ssl.data.filelist import FileListDataset
from vision_ssl.data.imagefolder import LAYOUT as IMAGEFOLDER_LAYOUT
from vision_ssl.data.imagefolder import ImageFolderDataset
from vision_ssl.data.tinyimagenet import LAYOUT as TINYIMAGENET_LAYOUT
from vision_ssl.data.tinyimagenet import TinyImageNetDataset

IMAGENET_LAYOUT = ("<root>/{train,val}/<wnid>/*.JPEG (ILSVRC2012 from image-net.org; val images moved into "
                   "their class folders with the usual valprep script)")


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a registered dataset."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    train_split: str
    test_split: str
    layout: str


DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), "train", "test", cifar_layout(10)),
    "cifar100": DatasetInfo((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), "train", "test", cifar_layout(100)),
    "tinyimagenet": DatasetInfo(IMAGENET_MEAN, IMAGENET_STD, "train", "val", TINYIMAGENET_LAYOUT),
    "imagenet": DatasetInfo(IMAGENET_MEAN, IMAGENET_STD, "train", "val", IMAGENET_LAYOUT),
    "imagefolder": DatasetInfo(IMAGENET_MEAN, IMAGENET_STD, "train", "test", IMAGEFOLDER_LAYOUT),
    "filelist": DatasetInfo(IMAGENET_MEAN, IMAGENET_STD, "train.tsv", "test.tsv", FILELIST_LAYOUT),
    # CD-FSL: SSL on the unlabeled 20 %, few-shot episodes from the labeled 80 %
    **{name: DatasetInfo(IMAGENET_MEAN, IMAGENET_STD, "unlabeled", "labeled", f"{layout} [{download}]")
       for name, (layout, download) in CDFSL_LAYOUTS.items()},
}


def build_dataset(name: str, root: str | Path, split: str, transform: Callable | None = None) -> LabeledImages:
    """Dataset ``name`` (see the module table) at ``root``, split ``split``."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    if not root or not Path(root).is_dir():
        raise layout_error(name, root, "the dataset root does not exist (recipes: set it in recipes/db.sh or pass "
                           "--data_root; library: data.root in the config)", DATASETS[name].layout)
    if name in ("cifar10", "cifar100"):
        return CIFARDataset(root, split, transform, num_classes=int(name[5:]))
    if name == "tinyimagenet":
        return TinyImageNetDataset(root, split, transform)
    if name == "imagenet":
        return ImageFolderDataset(root, split, transform, name="ImageNet", layout=IMAGENET_LAYOUT)
    if name in CDFSL_LAYOUTS:
        return CDFSLDataset(name, root, split, transform)
    if name == "filelist":
        return FileListDataset(root, split, transform)
    return ImageFolderDataset(root, split, transform)


__all__ = ["DATASETS", "CDFSLDataset", "CIFARDataset", "DatasetInfo", "DatasetLayoutError", "FileListDataset",
           "ImageFolderDataset", "LabeledImages", "TinyImageNetDataset", "build_dataset", "export_digits", "layout_error",
           "load_rgb"]
