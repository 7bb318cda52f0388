"""CD-FSL dataset readers on small trees in their standard layouts, the 20 % / 80 % split sizes of
reference 4.5, user split lists, layout errors, and the digit-class export of the mini twins."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vision_ssl.data import DATASETS, DatasetLayoutError, build_dataset, export_digits
from vision_ssl.data.cdfsl import split_indices

# reference 4.5: images -> (unlabeled, labeled)
SPLIT_SIZES = {"miniImageNet_test": (12_000, 2_400, 9_600), "CropDisease": (43_456, 8_691, 34_765),
               "EuroSAT": (27_000, 5_400, 21_600), "ISIC": (10_015, 2_003, 8_012), "ChestX": (25_848, 5_169, 20_679),
               "Places": (27_440, 5_488, 21_952), "Plantae": (26_650, 5_330, 21_320), "Cars": (16_185, 3_237, 12_948),
               "CUB": (11_788, 2_357, 9_431)}


@pytest.mark.parametrize("name", SPLIT_SIZES)
def test_split_sizes_of_the_reference(name):
    n, unlabeled, labeled = SPLIT_SIZES[name]
    u, lab = split_indices(n, "unlabeled"), split_indices(n, "labeled")
    assert (len(u), len(lab)) == (unlabeled, labeled)
    assert not np.intersect1d(u, lab).size and len(split_indices(n, "all")) == n
    assert np.array_equal(u, split_indices(n, "unlabeled"))  # deterministic (seed 1)


def _tree(folder, classes, per_class, ext="jpg"):
    for c in classes:
        (folder / c).mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            Image.new("RGB", (6, 6), (j, 0, 0)).save(folder / c / f"{c}_{j}.{ext}")


@pytest.mark.parametrize("name,sub", [("eurosat", ""), ("cropdisease", "dataset/train"), ("cub", "CUB_200_2011/images"),
                                      ("cars", ""), ("places", ""), ("plantae", ""), ("folder", ""),
                                      ("miniimagenet", "test")])
def test_class_folder_targets(tmp_path, name, sub):
    _tree(tmp_path / sub if sub else tmp_path, ["a", "b"], 10)
    sizes = {s: len(build_dataset(name, tmp_path, s)) for s in ("unlabeled", "labeled", "all")}
    assert sizes == {"unlabeled": 4, "labeled": 16, "all": 20}
    data = build_dataset(name, tmp_path, "labeled")
    assert data.classes == ["a", "b"] and data[0][0].size == (6, 6)
    assert DATASETS[name].train_split == "unlabeled" and DATASETS[name].test_split == "labeled"


def test_miniimagenet_source_splits(tmp_path):
    _tree(tmp_path / "train", ["n1", "n2", "n3"], 2)
    _tree(tmp_path / "test", ["n4", "n5"], 5)
    assert len(build_dataset("miniimagenet", tmp_path, "train")) == 6
    assert build_dataset("miniimagenet", tmp_path, "all").classes == ["n4", "n5"]
    with pytest.raises(DatasetLayoutError, match="val"):
        build_dataset("miniimagenet", tmp_path, "val")


def test_isic_onehot_csv(tmp_path):
    rows = ["image,MEL,NV,BCC,AKIEC,BKL,DF,VASC"]
    for i in range(10):
        onehot = ["0.0"] * 7
        onehot[i % 7] = "1.0"
        rows.append(f"ISIC_{i:07d}," + ",".join(onehot))
        Image.new("RGB", (4, 4)).save(tmp_path / f"ISIC_{i:07d}.jpg")
    (tmp_path / "ISIC2018_Task3_Training_GroundTruth.csv").write_text("\n".join(rows) + "\n")
    data = build_dataset("isic", tmp_path, "all")
    assert data.classes == ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    assert data.targets == [i % 7 for i in range(10)]
    assert len(build_dataset("isic", tmp_path, "unlabeled")) == 2
    (tmp_path / "ISIC_0000003.jpg").unlink()
    with pytest.raises(DatasetLayoutError, match="1 image.*ISIC_0000003.jpg"):
        build_dataset("isic", tmp_path, "all")
    rows[2] = "ISIC_0000001,1.0,1.0,0,0,0,0,0"
    (tmp_path / "ISIC2018_Task3_Training_GroundTruth.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(DatasetLayoutError, match=r"GroundTruth.csv:3: ISIC_0000001 is not labelled with exactly one"):
        build_dataset("isic", tmp_path, "all")


def test_chestx_keeps_single_label_images_of_seven_classes(tmp_path):
    (tmp_path / "images").mkdir()
    findings = ["Atelectasis", "Effusion|Mass", "No Finding", "Pneumothorax", "Hernia", "Cardiomegaly"]
    lines = ["Image Index,Finding Labels,Follow-up #"]
    for i, f in enumerate(findings):
        lines.append(f"{i:08d}_000.png,{f},0")
        Image.new("L", (4, 4)).save(tmp_path / "images" / f"{i:08d}_000.png")
    (tmp_path / "Data_Entry_2017.csv").write_text("\n".join(lines) + "\n")
    data = build_dataset("chestx", tmp_path, "all")
    assert len(data.classes) == 7 and data.targets == [0, 6, 1]
    assert data[0][0].mode == "RGB"


def test_user_split_list_and_layout_errors(tmp_path):
    _tree(tmp_path, ["a", "b"], 5)
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "labeled.txt").write_text("# my split\na/a_0.jpg\nb/b_4.jpg\n")
    data = build_dataset("eurosat", tmp_path, "labeled")
    assert [p.name for p in data.items] == ["a_0.jpg", "b_4.jpg"] and data.targets == [0, 1]
    assert len(build_dataset("eurosat", tmp_path, "unlabeled")) == 2  # no list: the seeded split
    (tmp_path / "splits" / "labeled.txt").write_text("a/missing.jpg\n")
    with pytest.raises(DatasetLayoutError, match=r"labeled.txt:1: 'a/missing.jpg' is not an image"):
        build_dataset("eurosat", tmp_path, "labeled")
    with pytest.raises(DatasetLayoutError, match=r"none of .*dataset/train"):
        build_dataset("cropdisease", tmp_path / "a", "labeled")
    with pytest.raises(DatasetLayoutError, match="Data_Entry_2017.csv' not found"):
        build_dataset("chestx", tmp_path, "labeled")
    with pytest.raises(ValueError, match="unknown split 'train'"):
        build_dataset("eurosat", tmp_path, "train")


def test_export_digits_classes(tmp_path):
    meta = export_digits(tmp_path / "src", size=8, classes=[0, 1, 2, 3, 4])
    full = export_digits(tmp_path / "all", size=8)
    assert meta["classes"] == ["0", "1", "2", "3", "4"] and full["counts"] == {"train": 1347, "test": 450}
    assert sorted(p.name for p in (tmp_path / "src" / "train").iterdir()) == ["0", "1", "2", "3", "4"]
    # same images as the ten-class export, restricted to the chosen digits
    for split in ("train", "test"):
        kept = sorted(p.name for c in "01234" for p in (tmp_path / "src" / split / c).iterdir())
        assert kept == sorted(p.name for c in "01234" for p in (tmp_path / "all" / split / c).iterdir())
    assert meta["counts"] == {"train": 675, "test": 226}
    with pytest.raises(ValueError, match="subset of 0..9"):
        export_digits(tmp_path / "bad", classes=[10])
