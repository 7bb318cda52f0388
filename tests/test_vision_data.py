"""Dataset readers on small trees in the standard on-disk formats, their layout errors, the
digits export and the augmentation pipelines."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vision_ssl.augment import AUGMENTATIONS, MultiView, blur_kernel, build_transform
from vision_ssl.data import DatasetLayoutError, build_dataset, export_digits


def _write_cifar(root: Path, num_classes: int, per_file: int = 6) -> Path:
    rng = np.random.default_rng(0)
    if num_classes == 10:
        folder, meta, names, key = root / "cifar-10-batches-py", "batches.meta", "label_names", "labels"
        files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    else:
        folder, meta, names, key = root / "cifar-100-python", "meta", "fine_label_names", "fine_labels"
        files = ["train", "test"]
    folder.mkdir(parents=True)
    for name in files:
        data = rng.integers(0, 256, size=(per_file, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, key: list(range(per_file))}, f)
    with open(folder / meta, "wb") as f:
        pickle.dump({names: [f"c{i}" for i in range(num_classes)]}, f)
    return folder


@pytest.mark.parametrize("num_classes,train_len", [(10, 30), (100, 6)])
def test_cifar_reader(tmp_path, num_classes, train_len):
    folder = _write_cifar(tmp_path, num_classes)
    name = f"cifar{num_classes}"
    train = build_dataset(name, tmp_path, "train")
    test = build_dataset(name, folder, "test")  # the inner folder works as root too
    assert len(train) == train_len and len(test) == 6 and len(train.classes) == num_classes
    img, label = train[1]
    assert img.size == (32, 32) and img.mode == "RGB" and label == 1
    # channel-planar rows are decoded to HWC pixels
    with open(next(p for p in folder.iterdir() if p.name in ("data_batch_1", "train")), "rb") as f:
        raw = pickle.load(f)["data"][1]
    assert np.array_equal(np.asarray(img)[0, 0], raw[[0, 1024, 2048]])


def test_cifar_missing_files_name_the_layout(tmp_path):
    folder = _write_cifar(tmp_path, 10)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DatasetLayoutError, match=r"(?s)missing \['data_batch_3'\].*cifar-10-batches-py"):
        build_dataset("cifar10", tmp_path, "train")
    (folder / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DatasetLayoutError, match="cannot read .*test_batch"):
        build_dataset("cifar10", tmp_path, "test")
    with pytest.raises(DatasetLayoutError, match="does not exist.*recipes/db.sh"):
        build_dataset("cifar100", tmp_path / "nowhere", "train")


def _png(path: Path, value: int, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8)).save(path)


def test_tinyimagenet_reader(tmp_path):
    root = tmp_path / "tiny-imagenet-200"
    wnids = ["n01", "n02", "n03"]
    (root).mkdir()
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for i, w in enumerate(wnids):
        for j in range(2):
            _png(root / "train" / w / "images" / f"{w}_{j}.JPEG", 10 * i)
    lines = []
    for j, w in enumerate(["n03", "n01"]):
        _png(root / "val" / "images" / f"val_{j}.JPEG", 5)
        lines.append(f"val_{j}.JPEG\t{w}\t0\t0\t8\t8")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    train = build_dataset("tinyimagenet", tmp_path, "train")
    val = build_dataset("tinyimagenet", tmp_path, "val")
    assert len(train) == 6 and train.targets == [0, 0, 1, 1, 2, 2] and train.classes == wnids
    assert val.targets == [2, 0] and val[0][0].size == (8, 8)
    with pytest.raises(ValueError, match="test has no labels"):
        build_dataset("tinyimagenet", tmp_path, "test")
    (root / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn99\n")
    with pytest.raises(DatasetLayoutError, match="val_annotations.txt:1: malformed"):
        build_dataset("tinyimagenet", tmp_path, "val")
    (root / "wnids.txt").unlink()
    with pytest.raises(DatasetLayoutError, match="(?s)wnids.txt' not found.*tiny-imagenet-200"):
        build_dataset("tinyimagenet", tmp_path, "train")


def test_imagefolder_reader_and_errors(tmp_path):
    for cls, n in (("b", 2), ("a", 1)):
        for j in range(n):
            _png(tmp_path / "train" / cls / f"{j}.png", 100)
    (tmp_path / "train" / "a" / "notes.txt").write_text("not an image")
    data = build_dataset("imagefolder", tmp_path, "train")
    assert data.classes == ["a", "b"] and data.targets == [0, 1, 1]
    with pytest.raises(DatasetLayoutError, match="(?s)split folder .*test' does not exist.*<split>/<class>/<image>"):
        build_dataset("imagefolder", tmp_path, "test")
    (tmp_path / "val" / "empty").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match="no image files"):
        build_dataset("imagefolder", tmp_path, "val")
    (tmp_path / "train" / "a" / "0.png").write_bytes(b"broken")
    with pytest.raises(OSError, match="0.png: cannot read image"):
        build_dataset("imagefolder", tmp_path, "train")[0]
    with pytest.raises(DatasetLayoutError, match="(?s)ImageNet at .*val images moved into their class folders"):
        build_dataset("imagenet", tmp_path, "val")


def test_export_digits(tmp_path):
    out = tmp_path / "digits"
    meta = export_digits(out, size=12, seed=0)
    assert meta["counts"] == {"train": 1347, "test": 450}
    train = build_dataset("imagefolder", out, "train")
    test = build_dataset("imagefolder", out, "test")
    assert len(train) == 1347 and len(test) == 450 and train.classes == [str(i) for i in range(10)]
    assert np.bincount(test.targets).min() >= 43  # stratified
    img = train[0][0]
    assert img.size == (12, 12) and np.asarray(img).max() > 200
    stamp = (out / "digits.json").stat().st_mtime_ns
    export_digits(out, size=12, seed=0)  # same parameters: nothing rewritten
    assert (out / "digits.json").stat().st_mtime_ns == stamp
    assert export_digits(out, size=10, seed=0)["params"]["size"] == 10
    assert Image.open(next((out / "train" / "0").iterdir())).size == (10, 10)
    assert not (tmp_path / "digits.tmp").exists()


@pytest.mark.parametrize("name", AUGMENTATIONS)
def test_augmentations_produce_normalised_tensors(name):
    torch.manual_seed(0)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    x = build_transform(name, 32)(img)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32


def test_multiview_and_blur_kernel():
    views = MultiView(build_transform("supcon", 16), 2)(Image.new("RGB", (20, 20), (120, 30, 200)))
    assert len(views) == 2 and views[0].shape == (3, 16, 16)
    assert blur_kernel(224) == 23 and blur_kernel(32) == 3 and blur_kernel(64) == 7
    with pytest.raises(ValueError, match="unknown augmentation"):
        build_transform("autoaugment", 32)
