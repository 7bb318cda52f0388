"""Target (and source) datasets of cross-domain few-shot learning, read from their usual layouts,
with the STARTUP-style 20 % unlabeled / 80 % labeled split.

================  ===================================================================  =======
name              layout under ``root``                                                classes
================  ===================================================================  =======
``miniimagenet``  ``{train,val,test}/<class>/*.jpg`` (target splits use ``test``)       64/16/20
``tieredimagenet`` ``{train,test}/<class>/*`` (target splits use ``test``)             351/160
``cropdisease``   ``dataset/train/<class>/*`` (or ``train/<class>/*``)                 38
``eurosat``       ``<class>/*.jpg`` (the RGB release; ``2750/<class>`` also accepted)  10
``isic``          ``*.jpg`` + ``ISIC2018_Task3_Training_GroundTruth.csv`` (one-hot)    7
``chestx``        ``images/*.png`` + ``Data_Entry_2017.csv``; single-label images of    7
                  Atelectasis, Cardiomegaly, Effusion, Infiltration, Mass, Nodule,
                  Pneumothorax
``cub``           ``CUB_200_2011/images/<class>/*.jpg``                                200
``cars``          ``<class>/*`` (all 16,185 images)                                    196
``places``        ``<class>/*`` (16-class subset)                                      16
``plantae``       ``<class>/*`` (69-class iNat-2018 subset)                            69
``folder``        ``<class>/*`` (any tree, e.g. the mini digits target)                any
================  ===================================================================  =======

Splits: ``unlabeled`` (``floor(0.2 N)`` images drawn by a permutation seeded 1), ``labeled`` (the
other 80 %) and ``all``; miniImageNet / tieredImageNet also read ``train`` / ``val`` / ``test``
directly (source pretraining). A user-supplied split list ``<root>/splits/{unlabeled,labeled}.txt``
(one image path per line, relative to the folder the images are read from, ``#`` comments)
replaces the drawn split when present.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vision_ssl.data.base import LabeledImages, layout_error
from vision_ssl.data.imagefolder import ImageFolderDataset

TARGET_SPLITS = ("unlabeled", "labeled", "all")
UNLABELED_FRACTION = 0.2
SPLIT_SEED = 1
CHESTX_CLASSES = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumothorax")
ISIC_CSV = "ISIC2018_Task3_Training_GroundTruth.csv"

#: name -> (expected layout, what to download)
CDFSL_LAYOUTS: dict[str, tuple[str, str]] = {
    "miniimagenet": ("<root>/{train,val,test}/<class>/*.jpg (64/16/20 classes, 600 images each)",
                     "miniImageNet (Ravi & Larochelle split) as class folders"),
    "tieredimagenet": ("<root>/{train,test}/<class>/* (351/160 classes)", "tieredImageNet as class folders"),
    "cropdisease": ("<root>/dataset/train/<class>/*.jpg (38 classes)",
                    "the Plant Village / CropDiseases images of the BSCD-FSL benchmark"),
    "eurosat": ("<root>/<class>/*.jpg (10 classes, 27,000 images)", "EuroSAT RGB (EuroSAT.zip)"),
    "isic": (f"<root>/*.jpg + <root>/{ISIC_CSV} (one-hot columns MEL,NV,BCC,AKIEC,BKL,DF,VASC)",
             "ISIC 2018 Task 3 training input and ground truth"),
    "chestx": ("<root>/images/*.png (all images in one folder) + <root>/Data_Entry_2017.csv",
               "NIH ChestX-ray14 images and Data_Entry_2017.csv"),
    "cub": ("<root>/CUB_200_2011/images/<class>/*.jpg (200 classes)", "CUB-200-2011 (CUB_200_2011.tgz)"),
    "cars": ("<root>/<class>/* (196 classes, 16,185 images)", "Stanford Cars train+test as class folders"),
    "places": ("<root>/<class>/* (16 classes, 27,440 images)", "the Places365 16-class CD-FSL subset"),
    "plantae": ("<root>/<class>/* (69 classes, 26,650 images)", "the iNaturalist-2018 Plantae CD-FSL subset"),
    "folder": ("<root>/<class>/<image> (one sub-folder per class)", "any class-folder tree"),
}

Listing = tuple[Path, list[Path], list[int], list[str]]  # image base folder, files, labels, classes


def split_indices(n: int, split: str, fraction: float = UNLABELED_FRACTION, seed: int = SPLIT_SEED) -> np.ndarray:
    """Sorted indices of ``split`` among ``n`` images: ``unlabeled`` = the first ``floor(fraction n)``
    of a permutation seeded ``seed``, ``labeled`` = the rest, ``all`` = everything."""
    if split == "all":
        return np.arange(n)
    perm = np.random.default_rng(seed).permutation(n)
    cut = math.floor(fraction * n)
    if split == "unlabeled":
        return np.sort(perm[:cut])
    if split == "labeled":
        return np.sort(perm[cut:])
    raise ValueError(f"unknown split {split!r}; choose one of {TARGET_SPLITS}")


def _folders(name: str, root: Path, folder: Path) -> Listing:
    layout = CDFSL_LAYOUTS[name][0]
    data = ImageFolderDataset(folder, "", name=name, layout=layout)
    return folder, list(data.items), list(data.targets), list(data.classes)


def _first_dir(name: str, root: Path, candidates: list[str]) -> Path:
    for rel in candidates:
        if (root / rel).is_dir():
            return root / rel
    raise layout_error(name, root, f"none of {[str(root / c) for c in candidates]} exists", CDFSL_LAYOUTS[name][0])


def _read_csv(name: str, root: Path, path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise layout_error(name, root, f"annotation file '{path}' not found", CDFSL_LAYOUTS[name][0])
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _isic(root: Path) -> Listing:
    csv_path = next((p for p in (root / ISIC_CSV, root / ISIC_CSV.removesuffix(".csv") / ISIC_CSV) if p.is_file()),
                    root / ISIC_CSV)
    rows = _read_csv("isic", root, csv_path)
    base = root / "ISIC2018_Task3_Training_Input" if (root / "ISIC2018_Task3_Training_Input").is_dir() else root
    if not rows or "image" not in rows[0]:
        raise layout_error("isic", root, f"'{csv_path}' has no 'image' column or no rows", CDFSL_LAYOUTS["isic"][0])
    classes = [c for c in rows[0] if c != "image"]
    files, labels = [], []
    for line, row in enumerate(rows, start=2):
        try:
            onehot = [float(row[c]) for c in classes]
        except (TypeError, ValueError) as err:
            raise layout_error("isic", root, f"{csv_path}:{line}: not a one-hot row ({err})",
                               CDFSL_LAYOUTS["isic"][0]) from err
        if sorted(onehot) != [0.0] * (len(classes) - 1) + [1.0]:
            raise layout_error("isic", root, f"{csv_path}:{line}: {row['image']} is not labelled with exactly one "
                               "class", CDFSL_LAYOUTS["isic"][0])
        files.append(base / f"{row['image']}.jpg")
        labels.append(onehot.index(1.0))
    return base, files, labels, classes


def _chestx(root: Path) -> Listing:
    csv_path = root / "Data_Entry_2017.csv"
    rows = _read_csv("chestx", root, csv_path)
    if not rows or not {"Image Index", "Finding Labels"} <= set(rows[0]):
        raise layout_error("chestx", root, f"'{csv_path}' lacks the 'Image Index' / 'Finding Labels' columns",
                           CDFSL_LAYOUTS["chestx"][0])
    base = root / "images"
    files, labels = [], []
    for row in rows:
        finding = row["Finding Labels"].strip()
        if finding in CHESTX_CLASSES:  # single-label images of the seven classes only
            files.append(base / row["Image Index"])
            labels.append(CHESTX_CLASSES.index(finding))
    return base, files, labels, list(CHESTX_CLASSES)


def _list(name: str, root: Path, split: str) -> Listing:
    if name in ("miniimagenet", "tieredimagenet"):
        return _folders(name, root, _first_dir(name, root, [split if split in ("train", "val", "test") else "test"]))
    if name == "cropdisease":
        return _folders(name, root, _first_dir(name, root, ["dataset/train", "train"]))
    if name == "eurosat":
        return _folders(name, root, root / "2750" if (root / "2750").is_dir() else root)
    if name == "cub":
        return _folders(name, root, _first_dir(name, root, ["CUB_200_2011/images", "images"]))
    if name == "isic":
        return _isic(root)
    if name == "chestx":
        return _chestx(root)
    return _folders(name, root, root)


def _read_split_list(name: str, root: Path, path: Path, base: Path, files: list[Path]) -> np.ndarray:
    position = {f.relative_to(base).as_posix(): i for i, f in enumerate(files)}
    picked = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        entry = line.split("#", 1)[0].strip().split(",")[0].strip()
        if not entry:
            continue
        if entry not in position:
            raise layout_error(name, root, f"{path}:{line_no}: '{entry}' is not an image of the dataset "
                               f"(paths are relative to '{base}')", CDFSL_LAYOUTS[name][0])
        picked.append(position[entry])
    return np.array(sorted(set(picked)), dtype=np.int64)


class CDFSLDataset(LabeledImages):
    """One split of a CD-FSL dataset (see the module table).

    Args:
        name: dataset name (a key of :data:`CDFSL_LAYOUTS`).
        root: dataset root.
        split: ``unlabeled`` | ``labeled`` | ``all`` (miniImageNet / tieredImageNet: also
            ``train`` | ``val`` | ``test``).
        transform: applied to the RGB PIL image.
    """

    def __init__(self, name: str, root: str | Path, split: str = "labeled", transform: Callable | None = None) -> None:
        if name not in CDFSL_LAYOUTS:
            raise ValueError(f"unknown CD-FSL dataset {name!r}; choose one of {sorted(CDFSL_LAYOUTS)}")
        root = Path(root)
        layout = CDFSL_LAYOUTS[name][0]
        source_split = name in ("miniimagenet", "tieredimagenet") and split in ("train", "val", "test")
        if split not in TARGET_SPLITS and not source_split:
            raise ValueError(f"{name}: unknown split {split!r}; choose one of {TARGET_SPLITS}")
        base, files, labels, classes = _list(name, root, split)
        if not files:
            raise layout_error(name, root, "no images found", layout)
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise layout_error(name, root, f"{len(missing)} image(s) listed by the annotations do not exist, e.g. "
                               f"'{missing[0]}'", layout)
        if source_split or split == "all":
            keep = np.arange(len(files))
        elif (root / "splits" / f"{split}.txt").is_file():
            keep = _read_split_list(name, root, root / "splits" / f"{split}.txt", base, files)
        else:
            keep = split_indices(len(files), split)
        super().__init__([files[i] for i in keep], [labels[i] for i in keep], classes, transform)
        self.name, self.split = name, split
