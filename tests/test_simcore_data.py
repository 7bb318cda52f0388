"""SimCore data plumbing: file lists (registered as ``filelist``), feature shards (written with
resume, read memory-mapped), coreset drawing and its sub-command, the results table and the mini sets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA
from PIL import Image

from vision_ssl.bin.simcore import label_fraction, main
from vision_ssl.config import load_config
from vision_ssl.data import DatasetLayoutError, build_dataset
from vision_ssl.data.filelist import read_filelist, write_filelist
from vision_ssl.methods import build_method
from vision_ssl.simcore import cosine_scores, greedy_select, kmeans_centroids, load_coreset_config
from vision_ssl.simcore.coreset import write_coreset
from vision_ssl.simcore.features import FeatureShards, extract_to_shards
from vision_ssl.simcore.mini import extract_omniglot, make_mini_sets

OMNIGLOT = SHARED_DATA / "omniglot"


def _images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        paths.append(folder / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def test_filelist_dataset(tmp_path):
    paths = _images(tmp_path / "img", 3)
    write_filelist(tmp_path / "train.tsv", [(paths[0], 2), ("img/1.png", -1), (paths[2], 0)])
    data = build_dataset("filelist", tmp_path, "train.tsv")
    assert len(data) == 3 and data.classes == ["0", "1", "2"] and data.targets == [2, -1, 0]
    image, label = data[1]  # relative paths resolve against the root
    assert image.size == (8, 8) and label == -1
    assert read_filelist(tmp_path / "train.tsv") == ([str(paths[0]), "img/1.png", str(paths[2])], [2, -1, 0])
    (tmp_path / "bad.tsv").write_text("a.png\t1\nb.png 2\n")
    with pytest.raises(ValueError, match=r"bad.tsv:2: expected 'path<TAB>integer label'"):
        build_dataset("filelist", tmp_path, "bad.tsv")
    with pytest.raises(DatasetLayoutError, match="list file .*missing.tsv' does not exist"):
        build_dataset("filelist", tmp_path, "missing.tsv")


def _encoder():
    torch.manual_seed(0)
    return build_method(load_config(None, ["method=simclr", "model.backbone=tiny_resnet"]))


def test_feature_shards_extract_resume_and_read(tmp_path):
    _images(tmp_path / "data" / "train" / "a", 7)
    _images(tmp_path / "data" / "train" / "b", 4, seed=1)
    from vision_ssl.augment import build_transform

    dataset = build_dataset("imagefolder", tmp_path / "data", "train", build_transform("plain", 8))
    out = tmp_path / "feats"
    meta = extract_to_shards(_encoder(), dataset, out, {"run": 1}, shard_size=4, batch_size=3, num_workers=0)
    assert meta["count"] == 11 and meta["dim"] == 128 and meta["shards"] == [
        "shard_00000.npy", "shard_00001.npy", "shard_00002.npy"]
    shards = FeatureShards(out)
    assert [len(s) for s in shards] == [4, 4, 3] and isinstance(next(iter(shards)), np.memmap)
    full = shards.load()
    assert np.allclose(np.linalg.norm(full, axis=1), 1, atol=1e-5)
    paths, labels = shards.items()
    assert labels == [0] * 7 + [1] * 4 and paths[0].endswith("train/a/0.png")
    # an interrupted run resumes after its last complete shard and gives the same rows
    (out / "features.json").unlink()
    (out / "shard_00002.npy").unlink()
    first = np.load(out / "shard_00000.npy")
    np.save(out / "shard_00000.npy", first + 1)  # marks the kept shard
    extract_to_shards(_encoder(), dataset, out, {"run": 1}, shard_size=4, batch_size=3, num_workers=0)
    again = FeatureShards(out).load()
    assert np.allclose(again[:4], first + 1) and np.allclose(again[4:], full[4:], atol=1e-6)
    # a finished folder asked for with other parameters: the old shards go, nothing stale is reused
    extract_to_shards(_encoder(), dataset, out, {"run": 2}, shard_size=4, batch_size=3, num_workers=0)
    assert np.allclose(FeatureShards(out).load(), full, atol=1e-6)
    with pytest.raises(FileNotFoundError, match="vision_ssl.bin.simcore features"):
        FeatureShards(tmp_path)


def _shards(folder: Path, feats: np.ndarray, labels: list[int], shard: int) -> None:
    folder.mkdir(parents=True)
    names = []
    for i in range(0, len(feats), shard):
        names.append(f"shard_{i // shard:05d}.npy")
        np.save(folder / names[-1], feats[i:i + shard])
    write_filelist(folder / "items.tsv", [(f"/img/{folder.name}/{i}.png", y) for i, y in enumerate(labels)])
    (folder / "features.json").write_text(json.dumps({"count": len(feats), "dim": feats.shape[1], "shards": names}))


def test_select_entry_point_writes_lists_and_summary(tmp_path):
    rng = np.random.default_rng(0)
    target = rng.standard_normal((30, 8)).astype(np.float32)
    open_set = rng.standard_normal((400, 8)).astype(np.float32)
    _shards(tmp_path / "target", target, [0] * 30, 16)
    _shards(tmp_path / "openset", open_set, [i % 4 for i in range(400)], 64)
    config = load_coreset_config(None, ["k=5", "patience=3", "budget_ratio=2", "max_epochs=50",
                                        "epoch_reference=10", "epoch_visits=10"])
    s = write_coreset(config, tmp_path / "target", tmp_path / "openset", tmp_path / "simcore")
    expected = greedy_select(cosine_scores(open_set, kmeans_centroids(target, 5)), 60, patience=3,
                             rng=np.random.default_rng(0))
    indices = np.load(tmp_path / "simcore" / "indices.npy")
    assert np.array_equal(indices, expected.indices) and s["size"] == len(indices) <= 60
    assert s["epochs"] == min(50, 100 // len(indices)) and s["open_set_size"] == 400
    assert sum(s["coreset_labels"].values()) == len(indices)
    coreset, _ = read_filelist(tmp_path / "simcore" / "coreset.tsv")
    train, _ = read_filelist(tmp_path / "simcore" / "train.tsv")
    assert coreset == [f"/img/openset/{i}.png" for i in indices] and train[:30] == [
        f"/img/target/{i}.png" for i in range(30)] and train[30:] == coreset
    # the random baseline through the command line, as large as the SimCore coreset
    assert main(["select", "--set", "method=random", "--target", str(tmp_path / "target"),
                 "--open_set", str(tmp_path / "openset"), "--out", str(tmp_path / "random"),
                 "--match", str(tmp_path / "simcore")]) == 0
    rand = json.loads((tmp_path / "random" / "summary.json").read_text())
    assert rand["size"] == s["size"] and rand["matched"] and rand["method"] == "random"
    assert len(np.unique(np.load(tmp_path / "random" / "indices.npy"))) == s["size"]
    again = write_coreset(config, tmp_path / "target", tmp_path / "openset", tmp_path / "simcore")
    assert again == json.loads((tmp_path / "simcore" / "summary.json").read_text())


def test_label_fraction():
    assert label_fraction({"3": 6, "5": 2, "-1": 8}, {3, 5}) == 0.5
    assert label_fraction({}, {3}) == 0.0


def test_mini_sets_from_digits(tmp_path):
    from vision_ssl.data import export_digits

    export_digits(tmp_path / "digits", size=8)  # train per class: 133 136 133 137 136 136 ...; test: 45 46 44 46 45 ...
    meta = make_mini_sets(tmp_path / "digits", tmp_path / "mini", [3, 5], per_class=10)
    assert meta["target_train"] == 20 and meta["open_set"] == 1347 - 20 and meta["open_set_omniglot"] == 0
    paths, labels = read_filelist(tmp_path / "mini" / "openset.tsv")
    assert sum(y in (3, 5) for y in labels) == meta["open_set_target_class"] == 137 + 136 - 20
    target = build_dataset("imagefolder", tmp_path / "mini" / "target", "train")
    assert target.classes == ["3", "5"] and len(target) == 20
    # digit files are named by their index in the corpus: no target image is also in the open set
    assert not {Path(p).name for p in target.items} & {Path(p).name for p in paths}
    assert len(build_dataset("imagefolder", tmp_path / "mini" / "target", "test")) == 46 + 46


@pytest.mark.skipif(not OMNIGLOT.is_dir(), reason=f"{OMNIGLOT} absent (run `make test-data`)")
def test_omniglot_open_set_images(tmp_path):
    images = extract_omniglot(OMNIGLOT, tmp_path / "omniglot")
    assert len(images) == 2720 + 3120  # SOURCES.md: the two small background sets
    with Image.open(images[0]) as img:
        assert img.size == (105, 105)
    assert extract_omniglot(OMNIGLOT, tmp_path / "omniglot") == images  # reused
    with pytest.raises(FileNotFoundError, match="images_background_small1.zip"):
        extract_omniglot(tmp_path, tmp_path / "other")
