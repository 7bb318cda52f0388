"""Trivial baselines of the vision results tables: chance level, the random-init network and raw
pixels, computed by the shared evaluation (linear probe + kNN, few-shot episodes) on the right
inputs, and their rows in every table (linear, CD-FSL, study / fixed episodes, SimCore, DiffBlender)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vision_ssl.augment import build_transform
from vision_ssl.backbones import build_backbone
from vision_ssl.bin.fewshot_eval import Source, baseline_source
from vision_ssl.bin.fewshot_eval import main as fewshot_eval
from vision_ssl.config import load_config
from vision_ssl.data import build_dataset, export_digits
from vision_ssl.eval import PixelEncoder, chance_accuracy, knn_scores
from vision_ssl.eval.baselines import module_device

ROOT = Path(__file__).resolve().parents[1]
SIMCLR_CONF = ROOT / "egs" / "mini_digits" / "simclr" / "conf" / "simclr.yaml"


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_chance_and_pixel_encoder():
    assert chance_accuracy(10) == 10.0 and chance_accuracy(5) == 20.0 and chance_accuracy(20) == 5.0
    with pytest.raises(ValueError, match="at least one class"):
        chance_accuracy(0)
    enc = PixelEncoder(2)
    x = torch.arange(24.0).reshape(2, 3, 2, 2)
    assert enc.out_dim == 12 and enc.feature_dims() == {"backbone": 12}
    assert torch.equal(enc(x), x.reshape(2, 12)) and torch.equal(enc.features(x)["backbone"][1], torch.arange(12.0, 24.0))
    assert list(enc.parameters()) == [] and module_device(enc) == torch.device("cpu")
    with pytest.raises(ValueError, match="expects 12 values per image"):
        enc(torch.zeros(1, 3, 4, 4))


def test_linear_eval_pixel_baseline_probes_normalised_pixels(tmp_path):
    from vision_ssl.bin.linear_eval import main as linear_eval

    export_digits(tmp_path / "digits", size=8)
    exp = tmp_path / "exp"
    sets = ["--set", f"data.root={tmp_path / 'digits'}", "--set", "data.image_size=8", "--set", "linear.epochs=3",
            "--set", "linear.milestones=[2]"]
    [summary] = linear_eval(["--config", str(SIMCLR_CONF), "--expdir", str(exp), "--baseline", "pixels", *sets])
    result = json.loads((exp / "baselines" / "pixels" / "seed0" / "linear" / "result.json").read_text())
    assert result == summary and result["baseline"] == "pixels" and result["num_classes"] == 10
    assert list(result["best_top1"]) == ["backbone"] and result["best_top1"]["backbone"] > 85.0  # 450 test digits
    # the kNN figure: the same weighted kNN on the flattened, standardised 8x8 pixels (k 20, T 0.07)
    mean, std = load_config(SIMCLR_CONF).data.norm
    transform = build_transform("plain", 8, mean, std)

    def pixels(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        data = build_dataset("imagefolder", str(tmp_path / "digits"), split, transform)
        xs, ys = zip(*(data[i] for i in range(len(data))))
        return torch.stack(xs).flatten(1), torch.tensor(ys)

    (bank, bank_y), (test, test_y) = pixels("train"), pixels("test")
    # flattened pixels normalised like the networks' inputs: a black pixel of channel 0 is -mean / std
    assert bank.shape == (1347, 192) and float(bank[:, 0].min()) == pytest.approx(-mean[0] / std[0], abs=1e-5)
    pred = knn_scores(test, bank, bank_y, 10, k=20, temperature=0.07).argmax(1)
    assert result["knn_top1"] == pytest.approx(100.0 * (pred == test_y).float().mean().item())


def test_random_init_baseline_is_the_untrained_method_of_the_seed():
    from vision_ssl.bin.linear_eval import LinearBaseline
    from vision_ssl.methods import build_method

    config = load_config(SIMCLR_CONF)
    baseline = LinearBaseline("random_init")

    def weights(seed: int, cfg=config) -> dict:
        torch.manual_seed(seed)
        return baseline.encoder(cfg, Path("unused")).state_dict()

    torch.manual_seed(3)
    fresh = build_method(config).state_dict()
    assert all(torch.equal(fresh[k], v) for k, v in weights(3).items())  # what pretraining seed 3 starts from
    assert not torch.equal(weights(4)["backbone.conv1.weight"], fresh["backbone.conv1.weight"])
    # a two-stage config's first-stage weights are not loaded (the file does not even exist)
    two_stage = replace(config, cdfsl=replace(config.cdfsl, init_from="/nowhere/last.ckpt"))
    assert torch.equal(weights(3, two_stage)["backbone.conv1.weight"], fresh["backbone.conv1.weight"])
    with pytest.raises(ValueError, match="unknown baseline"):
        LinearBaseline("noise")


def test_linear_results_table_has_baselines_and_chance(tmp_path):
    from vision_ssl.bin.results import collect, to_markdown

    for seed, acc in enumerate((80.0, 84.0)):
        _write(tmp_path / f"seed{seed}" / "linear" / "result.json", {"best_top1": {"backbone": acc}, "num_classes": 10})
        _write(tmp_path / f"seed{seed}" / "pretrain_done.json", {"knn_top1": acc + 1})
        _write(tmp_path / "baselines" / "random_init" / f"seed{seed}" / "linear" / "result.json",
               {"best_top1": {"backbone": 40.0 + 2 * seed}, "knn_top1": 30.0, "num_classes": 10})
    _write(tmp_path / "baselines" / "pixels" / "seed0" / "linear" / "result.json",
           {"best_top1": {"backbone": 90.0}, "knn_top1": 95.0, "num_classes": 10})
    table = collect(tmp_path)
    assert table["rows"]["linear top-1 (backbone)"]["mean"] == pytest.approx(82.0)
    assert list(table["baselines"]) == ["random_init", "pixels"]
    rand = table["baselines"]["random_init"]
    assert rand["seeds"] == ["seed0", "seed1"] and rand["rows"]["linear top-1 (backbone)"]["mean"] == pytest.approx(41.0)
    assert rand["rows"]["linear top-1 (backbone)"]["std"] == pytest.approx(2 ** 0.5)
    assert rand["rows"]["kNN top-1 (backbone)"]["values"] == [30.0, 30.0]
    assert table["chance"] == {"num_classes": 10, "top1": 10.0}
    md = to_markdown(table)
    assert "| baseline: random-init network, linear top-1 (backbone) | 41.00 | 1.41 | 40.00, 42.00 |" in md
    assert "| baseline: raw pixels, kNN top-1 (backbone) | 95.00 | 0.00 | 95.00 |" in md
    assert md.rstrip().endswith("| chance (1/10) | 10.00 | – | – |")
    lines = md.splitlines()
    assert lines.index("| linear top-1 (backbone) | 82.00 | 2.83 | 80.00, 84.00 |") < lines.index(
        "| baseline: raw pixels, linear top-1 (backbone) | 90.00 | 0.00 | 90.00 |")


def _colour_folder(root: Path, per_class: int = 6) -> None:
    """Three classes of 16x16 images, each a noisy plain red / green / blue: separable in pixel space."""
    rng = np.random.default_rng(0)
    for c in range(3):
        (root / f"c{c}").mkdir(parents=True)
        for j in range(per_class):
            img = rng.integers(0, 60, (16, 16, 3)).astype(np.uint8)
            img[..., c] += 180
            Image.fromarray(img).save(root / f"c{c}" / f"{j}.png")


def test_fewshot_eval_baselines_on_the_same_episodes(tmp_path, capsys):
    _colour_folder(tmp_path / "data")
    torch.manual_seed(0)
    torch.save(build_backbone("tiny_resnet").state_dict(), tmp_path / "w.pt")
    out = tmp_path / "baselines.json"
    fewshot_eval(["--backbone", "tiny_resnet", "--weights", str(tmp_path / "w.pt"), "--dataset", "folder", "--root",
                  str(tmp_path / "data"), "--split", "all", "--n_way", "3", "--shots", "1", "2", "--queries", "2",
                  "--episodes", "3", "--set", "epochs=5", "--image_size", "8", "--device", "cpu",
                  "--baselines", "random_init", "pixels", "--baselines_only", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["results"] == [] and result["chance"] == pytest.approx(100 / 3)
    rows = [(r["baseline"], r["update"], r["shots"], r["episodes"]) for r in result["baselines"]]
    assert rows == [("random_init", "lp", 1, 3), ("random_init", "lp", 2, 3), ("pixels", "lp", 1, 3), ("pixels", "lp", 2, 3)]
    pixels = [r for r in result["baselines"] if r["baseline"] == "pixels"]
    assert [r["per_episode"] for r in pixels] == [[100.0] * 3] * 2  # the colours separate linearly in pixel space
    assert "folder pixels baseline lp 3-way 2-shot: 100.00 ± 0.00" in capsys.readouterr().out


def test_baseline_source_is_seeded_and_needs_an_architecture():
    source = Source(build_backbone("tiny_resnet"), [0.5] * 3, [0.25] * 3, 16, "w.pt",
                    fresh=lambda: build_backbone("tiny_resnet"))
    a, b = baseline_source(source, "random_init", 7, 16), baseline_source(source, "random_init", 7, 16)
    c = baseline_source(source, "random_init", 8, 16)
    assert torch.equal(a.backbone.conv1.weight, b.backbone.conv1.weight)
    assert not torch.equal(a.backbone.conv1.weight, c.backbone.conv1.weight)
    pixels = baseline_source(source, "pixels", 7, 16)
    assert isinstance(pixels.backbone, PixelEncoder) and pixels.backbone.out_dim == 768 and pixels.mean == [0.5] * 3
    with pytest.raises(ValueError, match="no architecture known"):
        baseline_source(replace(source, fresh=None), "random_init", 0, 16)


def test_study_table_rows_and_probe_update():
    from vision_ssl.fewshot.study import StudyConfig, to_markdown

    summary = {"dataset": "folder", "n_way": 5, "chance": 20.0,
               "results": [{"update": "ft", "shots": k, "mean": 60.0 + k, "ci95": 1.0, "episodes": 15} for k in (1, 5)],
               "baselines": [{"baseline": kind, "update": "lp", "shots": k, "mean": m + k, "ci95": 2.0, "episodes": 15}
                             for kind, m in (("random_init", 30.0), ("pixels", 40.0)) for k in (1, 5)]}
    md = to_markdown([summary])
    assert "| folder | ft | 61.00 ± 1.00 | 65.00 ± 1.00 |" in md
    assert "| folder | baseline: random-init network (lp) | 31.00 ± 2.00 | 35.00 ± 2.00 |" in md
    assert "| folder | baseline: raw pixels (lp) | 41.00 ± 2.00 | 45.00 ± 2.00 |" in md
    assert "| folder | chance (1/5) | 20.00 | 20.00 |" in md
    fixed = {"dataset": "omniglot", "n_way": 20, "chance": 5.0, "results": [],
             "baselines": [{"baseline": "pixel_nn", "update": "pixel_nn", "shots": 1, "mean": 22.75, "ci95": 4.74,
                            "episodes": 20}]}
    assert "| omniglot | baseline: raw-pixel nearest neighbour | 22.75 ± 4.74 |" in to_markdown([fixed])
    # ReFine's table has no lp row: its defaults with only the head trained
    refine = StudyConfig(defaults={"parts": ["full"], "epochs": 10, "zero_head_bias": True},
                         updates={"ft": {}, "refine": {"refine": True}})
    name, probe = refine.probe_update()
    assert name == "lp" and probe.parts == ["head"] and not probe.refine and probe.epochs == 10 and probe.zero_head_bias
    study = StudyConfig(defaults={"epochs": 10}, updates={"lp": {"parts": ["head"], "lr": 0.5}})
    assert study.probe_update()[1].lr == 0.5


def test_cdfsl_table_baseline_rows_and_chance(tmp_path):
    from vision_ssl.bin.results import cdfsl_markdown, collect_cdfsl, collect_cdfsl_baselines

    _write(tmp_path / "sl" / "folder" / "summary.json",
           {"results": [{"shots": k, "update": "lp", "mean": 70.0 + k, "ci95": 1.0, "episodes": 20} for k in (1, 5)]})
    _write(tmp_path / "baselines" / "folder" / "summary.json",
           {"n_way": 5, "results": [], "baselines": [
               {"baseline": kind, "shots": k, "update": "lp", "mean": m + k, "ci95": 2.0, "episodes": 20}
               for kind, m in (("pixels", 50.0), ("random_init", 30.0)) for k in (1, 5)]})
    rows = collect_cdfsl(tmp_path, ["sl"], ["folder"])
    baselines, chance = collect_cdfsl_baselines(tmp_path, ["folder", "other"])
    assert [(r["scheme"], r["shots"][5]["mean"]) for r in baselines] == [
        ("baseline: random-init network", 35.0), ("baseline: raw pixels", 55.0)]  # table order, whatever the file's
    assert chance == {"n_way": 5, "accuracy": 20.0}
    md = cdfsl_markdown(rows + baselines, chance)
    assert "| baseline: raw pixels | folder | lp | 51.00 ± 2.00 | 55.00 ± 2.00 |" in md
    assert "| chance (1/5) | all | – | 20.00 | 20.00 |" in md
    assert collect_cdfsl_baselines(tmp_path / "sl", ["folder"]) == ([], None)


def test_simcore_report_lists_baselines_and_chance(tmp_path):
    from vision_ssl.bin.simcore import report, to_markdown

    _write(tmp_path / "target_only" / "seed0" / "linear" / "result.json", {"best_top1": {"backbone": 80.0},
                                                                           "num_classes": 3})
    for kind, acc in (("random_init", 50.0), ("pixels", 90.0)):
        _write(tmp_path / "baselines" / kind / "seed0" / "linear" / "result.json",
               {"best_top1": {"backbone": acc}, "num_classes": 3})
    table = report(tmp_path, ["target_only"])
    assert table["baselines"]["pixels"]["top1"] == 90.0 and table["baselines"]["random_init"]["top1_values"] == [50.0]
    assert table["chance"]["num_classes"] == 3 and table["chance"]["top1"] == pytest.approx(100 / 3)
    md = to_markdown(table)
    assert "| baseline: random-init network (no pretraining) | 50.00 | 0.00 | - | - | - |" in md
    assert "| chance (1/3) | 33.33 | - | - | - | - |" in md


def test_diffblender_chance_box_scores_and_table():
    from vision_ssl.diffblender.data.shapes import SHAPE_COLORS
    from vision_ssl.diffblender.evaluation import chance_box_scores, to_markdown

    # boxes 0 | 1a 1b | 2 of three images; 10 ordered pairs from different images (1a-1b share an
    # image and are left out): IoU 1 for 0-1a, 1a-0, 1b-2, 2-1b, IoU 0 for the other 6
    boxes = [[[0, 0, 0.5, 0.5]], [[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]], [[0.5, 0.5, 1, 1]]]
    chance = chance_box_scores(boxes)
    assert chance["box_iou"] == pytest.approx(0.4) and chance["box_iou@0.5"] == pytest.approx(0.4)
    assert chance["color_match"] == pytest.approx(1 / len(SHAPE_COLORS))
    with pytest.raises(ValueError, match="at least two images"):
        chance_box_scores([[[0, 0, 1, 1], [0, 0, 0.5, 0.5]]])
    rows = {"none": {"num_images": 4, "box_iou": 0.1, "chance": {"box_iou": 0.05}},
            "box": {"num_images": 4, "box_iou": 0.5, "chance": {"box_iou": 0.05}}}
    md = to_markdown(rows)
    assert "| none | 4 | 0.1000 |" in md and "| chance (box of another image; 1/colours) | - | 0.0500 |" in md
    assert "`none` (text only, no conditions) is the unconditioned baseline" in md
