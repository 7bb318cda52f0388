"""Fixed few-shot episodes: the episode-list and official Omniglot run readers on hand-made
folders, the raw-pixel nearest-neighbour baseline on hand-checked episodes, ``fewshot_eval``'s
fixed-episode inputs, the real Omniglot runs (skipped without the test data) and the mini
Omniglot recipe (fast failure without the runs; end to end, slow)."""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA
from PIL import Image

from vision_ssl.backbones import build_backbone
from vision_ssl.bin.fewshot_eval import main as fewshot_eval
from vision_ssl.fewshot.fixed_episodes import (
    EpisodeFileError,
    FixedEpisode,
    common_shape,
    evaluate_pixel_nn,
    pixel_nn_accuracy,
    pixel_nn_predict,
    pixel_vectors,
    read_episodes_file,
)
from vision_ssl.fewshot.omniglot import prepare, read_omniglot_run, read_omniglot_runs

ROOT = Path(__file__).resolve().parents[1]
OMNIGLOT = SHARED_DATA / "omniglot"
HEADER = "episode\trole\tpath\tlabel\n"
# measured with the recipe defaults on 2 CPU cores (20 runs, 20-way 1-shot; chance 5 %): the
# pixel baseline is deterministic, the LP row depends on the pretraining's float arithmetic
PIXEL_NN_28 = 22.75
LP_MEASURED = 64.75


def _png(path: Path, pixels) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(path)
    return path


def _make_run(runs: Path, name: str, matches: list[int]) -> Path:
    """A run folder with the official file set: training/classYY.png, test/itemYY.png and
    class_labels.txt; query item i (1-based) matches training class matches[i - 1]."""
    rng = np.random.default_rng(len(matches))
    for c in range(1, len(matches) + 1):
        _png(runs / name / "training" / f"class{c:02d}.png", rng.integers(0, 2, (6, 6)) * 255)
    lines = []
    for i, c in enumerate(matches, 1):
        _png(runs / name / "test" / f"item{i:02d}.png", rng.integers(0, 2, (6, 6)) * 255)
        lines.append(f"{name}/test/item{i:02d}.png {name}/training/class{c:02d}.png")
    (runs / name / "class_labels.txt").write_text("\n".join(lines) + "\n")
    return runs / name


def test_omniglot_run_labels_each_query_by_its_training_image(tmp_path):
    run = _make_run(tmp_path / "runs", "run01", [3, 1, 2])
    ep = read_omniglot_run(run)
    assert ep.name == "run01" and ep.classes == ["class01", "class02", "class03"]
    assert [p.name for p in ep.support] == ["class01.png", "class02.png", "class03.png"] and ep.support_labels == [0, 1, 2]
    assert [p.name for p in ep.query] == ["item01.png", "item02.png", "item03.png"] and ep.query_labels == [2, 0, 1]
    assert (ep.n_way, ep.shots) == (3, 1)
    _make_run(tmp_path / "runs", "run02", [2, 2, 1])  # a class may match several queries, another none
    eps = read_omniglot_runs(tmp_path / "runs")
    assert [e.name for e in eps] == ["run01", "run02"] and eps[1].query_labels == [1, 1, 0]


def test_omniglot_run_errors_name_the_file(tmp_path):
    run = _make_run(tmp_path / "runs", "run01", [1, 2])
    labels = run / "class_labels.txt"
    labels.write_text("run01/test/item01.png run01/training/class01.png\n")
    with pytest.raises(EpisodeFileError, match=r"no line for query image\(s\) \['item02.png'\]"):
        read_omniglot_run(run)
    labels.write_text("run01/test/item01.png run01/training/class07.png\nrun01/test/item02.png run01/training/class01.png\n")
    with pytest.raises(EpisodeFileError, match=r"class_labels.txt:1: support image .*class07.png not found"):
        read_omniglot_run(run)
    labels.write_text("run01/test/item01.png\n")
    with pytest.raises(EpisodeFileError, match="class_labels.txt:1: expected"):
        read_omniglot_run(run)
    labels.unlink()
    with pytest.raises(EpisodeFileError, match="class_labels.txt not found"):
        read_omniglot_run(run)
    with pytest.raises(EpisodeFileError, match="no run folders"):
        read_omniglot_runs(tmp_path / "runs")
    with pytest.raises(FileNotFoundError, match="Omniglot runs folder not found"):
        read_omniglot_runs(tmp_path / "nowhere")


def test_prepare_unpacks_runs_and_exports_background(tmp_path):
    _make_run(tmp_path / "src", "run01", [2, 1])
    _make_run(tmp_path / "src", "run02", [1, 2])
    omniglot = tmp_path / "omniglot"
    omniglot.mkdir()
    with zipfile.ZipFile(omniglot / "all_runs.zip", "w") as z:
        for f in sorted((tmp_path / "src").rglob("*")):
            z.write(f, f.relative_to(tmp_path / "src"))
    with zipfile.ZipFile(omniglot / "images_background_small1.zip", "w") as z:
        for alphabet in ("Greek", "Latin"):
            for char in ("character01", "character02"):
                for drawer in range(1, 6):
                    png = _png(tmp_path / "bg" / f"{char}_{drawer:02d}.png", np.full((4, 4), 40 * drawer))
                    z.write(png, f"images_background_small1/{alphabet}/{char}/0100_{drawer:02d}.png")
    out = tmp_path / "data"
    meta = prepare(omniglot, out, "images_background_small1", test_drawers=2)
    assert meta["runs"] == 2 and meta["queries"] == 4
    assert meta["background"] == {"train": 12, "test": 8, "classes": 4}
    assert sorted(p.name for p in (out / "background" / "test" / "Latin__character02").iterdir()) == [
        "0100_04.png", "0100_05.png"]
    assert [e.query_labels for e in read_omniglot_runs(out / "runs")] == [[1, 0], [0, 1]]
    (out / "runs" / "run01" / "marker").write_text("")
    assert prepare(omniglot, out, "images_background_small1", test_drawers=2) == meta  # finished: reused
    assert (out / "runs" / "run01" / "marker").is_file()
    with pytest.raises(FileNotFoundError, match="neither images_background_small2.zip"):
        prepare(omniglot, tmp_path / "data2", "images_background_small2")


def test_episodes_file_reader(tmp_path):
    imgs = {n: _png(tmp_path / "img" / f"{n}.png", np.full((4, 4), v)) for n, v in
            (("a1", 0), ("a2", 10), ("b1", 200), ("c1", 90), ("q1", 5), ("q2", 190))}
    lines = ["# two episodes, lines interleaved\n", HEADER,
             "e2\tsupport\timg/c1.png\tcat\n",
             "e1\tsupport\timg/b1.png\tbee\n",
             "e1\tsupport\timg/a1.png\tant\n",
             f"e1\tsupport\t{imgs['a2']}\tant\n",  # absolute path
             "\n",
             "e1\tquery\timg/q1.png\tant\n",
             "e2\tsupport\timg/a1.png\tant\n",
             "e1\tquery\timg/q2.png\tbee\n",
             "e2\tquery\timg/q1.png\tcat\n"]
    (tmp_path / "eps.tsv").write_text("".join(lines))
    e2, e1 = read_episodes_file(tmp_path / "eps.tsv")  # episodes in order of first appearance
    assert (e2.name, e1.name) == ("e2", "e1") and e1.classes == ["bee", "ant"]  # labels: first support appearance
    assert e1.support == [imgs["b1"], imgs["a1"], imgs["a2"]] and e1.support_labels == [0, 1, 1]
    assert e1.query == [imgs["q1"], imgs["q2"]] and e1.query_labels == [1, 0]
    assert (e1.n_way, e1.shots) == (2, None)  # 1 bee, 2 ants
    assert e2.classes == ["cat", "ant"] and e2.query_labels == [0] and e2.shots == 1
    assert common_shape([e1, e2]) == (2, None) and common_shape([e2]) == (2, 1)

    def fails(body: str, match: str, header: str = HEADER) -> None:
        (tmp_path / "bad.tsv").write_text(header + body)
        with pytest.raises(EpisodeFileError, match=match):
            read_episodes_file(tmp_path / "bad.tsv")

    fails("", "the first line must be the header", header="episode,role,path,label\n")
    fails("e1\ttrain\timg/a1.png\tant\n", r"bad.tsv:2: role must be one of \['support', 'query'\]")
    fails("e1\tsupport\timg/a1.png\n", "bad.tsv:2: expected 4 tab-separated fields")
    fails("e1\tsupport\timg/zz.png\tant\n", "bad.tsv:2: image .*zz.png not found")
    fails("e1\tsupport\timg/a1.png\tant\ne1\tquery\timg/q1.png\tbee\n", r"query label\(s\) \['bee'\] have no support")
    fails("e1\tquery\timg/q1.png\tant\n", r"query label\(s\) \['ant'\] have no support")
    fails("", "no episodes")
    with pytest.raises(FileNotFoundError, match="episode list file not found"):
        read_episodes_file(tmp_path / "none.tsv")


def _hand_episode(folder: Path) -> FixedEpisode:
    """3-way 1-shot, 2x2 grey images. Squared distances (pixels in [0, 1], x3 for RGB) of each query
    to the supports A (black), B (white), C (left column white):
    q1: A 0.19, B 10.68, C 6.19 -> A (true A);  q2: A 9.76, B 0.74, C 3.76 -> B (true B);
    q3: A 3.76, B 6.74, C 0.74 -> C (true C);  q4 (top row white): A 6, B 6, C 6, a tie, so the first
    support, A (true C): 3 of 4 correct."""
    grey = {"A": [[0, 0], [0, 0]], "B": [[255, 255], [255, 255]], "C": [[255, 0], [255, 0]],
            "q1": [[0, 0], [0, 64]], "q2": [[255, 255], [255, 128]], "q3": [[255, 0], [128, 0]],
            "q4": [[255, 255], [0, 0]]}
    paths = {k: _png(folder / f"{k}.png", v) for k, v in grey.items()}
    return FixedEpisode.from_named("hand", [(paths[c], c) for c in "ABC"],
                                   [(paths["q1"], "A"), (paths["q2"], "B"), (paths["q3"], "C"), (paths["q4"], "C")])


def test_pixel_nn_hand_checked(tmp_path):
    ep = _hand_episode(tmp_path)
    support = pixel_vectors([Image.open(p) for p in ep.support], 2)
    query = pixel_vectors([Image.open(p) for p in ep.query], 2)
    assert support.shape == (3, 12) and support[2].tolist() == [1.0] * 3 + [0.0] * 3 + [1.0] * 3 + [0.0] * 3
    assert pixel_nn_predict(support, ep.support_labels, query).tolist() == [0, 1, 2, 0]
    assert pixel_nn_accuracy(ep, 2) == 75.0
    perfect = FixedEpisode("same", ep.support, [0, 1, 2], ep.support, [0, 1, 2], ["A", "B", "C"])
    result = evaluate_pixel_nn([ep, perfect], 2)
    assert result.accuracies == [75.0, 100.0] and result.mean == 87.5 and result.shots == 1
    assert result.ci95 == pytest.approx(1.96 * np.std([75.0, 100.0], ddof=1) / np.sqrt(2))  # 24.5


def test_fewshot_eval_fixed_episode_inputs(tmp_path, capsys):
    ep = _hand_episode(tmp_path / "img")
    rows = [f"{e}\t{role}\t{p}\t{label}" for e in ("ep_a", "ep_b")
            for role, paths, labels in (("support", ep.support, ep.support_labels), ("query", ep.query, ep.query_labels))
            for p, label in zip(paths, labels)]
    (tmp_path / "tiny.tsv").write_text(HEADER + "\n".join(rows) + "\n")
    torch.manual_seed(0)
    torch.save(build_backbone("tiny_resnet").state_dict(), tmp_path / "w.pt")
    source = ["--backbone", "tiny_resnet", "--weights", str(tmp_path / "w.pt"), "--device", "cpu"]
    out = tmp_path / "res" / "result.json"
    fewshot_eval([*source, "--episodes_file", str(tmp_path / "tiny.tsv"), "--update", "lp", "ft", "--set", "epochs=3",
                  "--image_size", "2", "--pixel_nn", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["dataset"] == "tiny" and (result["n_way"], result["shots"], result["image_size"]) == (3, 1, 2)
    assert result["episodes_source"] == str(tmp_path / "tiny.tsv")
    assert [r["update"] for r in result["results"]] == ["lp", "ft"]
    assert [(r["baseline"], r["update"]) for r in result["baselines"]] == [("pixel_nn", "pixel_nn")]
    assert result["chance"] == pytest.approx(100 / 3)
    for r in result["results"] + result["baselines"]:
        assert r["episode_ids"] == ["ep_a", "ep_b"] and r["episodes"] == 2 and r["shots"] == 1
        assert all(a in (0.0, 25.0, 50.0, 75.0, 100.0) for a in r["per_episode"])  # k of 4 queries
    assert result["baselines"][0]["per_episode"] == [75.0, 75.0] and result["baselines"][0]["ci95"] == 0.0
    assert "tiny pixel_nn 2 fixed episodes (3-way 1-shot): 75.00 ± 0.00" in capsys.readouterr().out
    # the official run format through --omniglot_runs (default image size of plain weights: 224)
    _make_run(tmp_path / "runs", "run01", [2, 1])
    fewshot_eval([*source, "--omniglot_runs", str(tmp_path / "runs"), "--set", "epochs=2", "--image_size", "6",
                  "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["dataset"] == "omniglot" and [r["update"] for r in result["results"]] == ["lp"]
    assert result["results"][0]["episode_ids"] == ["run01"]
    # the sampling options and the two fixed inputs exclude each other
    for extra, message in ((["--n_way", "5", "--dataset", "folder"], "--dataset, --n_way: not allowed with"),
                           (["--omniglot_runs", str(tmp_path)], "not allowed with argument --episodes_file")):
        with pytest.raises(SystemExit) as err:
            fewshot_eval([*source, "--episodes_file", str(tmp_path / "tiny.tsv"), *extra, "--out", str(out)])
        assert err.value.code == 2 and message in capsys.readouterr().err
    for args, message in (([], "--dataset and --root are required unless"),
                          (["--dataset", "folder", "--root", str(tmp_path), "--pixel_nn"], "--pixel_nn needs fixed")):
        with pytest.raises(SystemExit) as err:
            fewshot_eval([*source, *args, "--out", str(out)])
        assert err.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        fewshot_eval([*source, "--omniglot_runs", str(tmp_path / "img"), "--out", str(out)])
    assert err.value.code == 1 and "no run folders" in capsys.readouterr().err


@pytest.mark.skipif(not (OMNIGLOT / "all_runs.zip").is_file(), reason=f"Omniglot runs not in {OMNIGLOT}")
def test_official_omniglot_runs(tmp_path):
    prepare(OMNIGLOT, tmp_path / "data")
    episodes = read_omniglot_runs(tmp_path / "data" / "runs")
    assert [e.name for e in episodes] == [f"run{i:02d}" for i in range(1, 21)]
    assert all((e.n_way, e.shots, len(e.query)) == (20, 1, 20) for e in episodes)
    assert episodes[0].query_labels[:3] == [7, 8, 1]  # run01: item01 -> class08, item02 -> class09, item03 -> class02
    assert evaluate_pixel_nn(episodes, 28).mean == PIXEL_NN_28


def _run_recipe(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "egs/mini_omniglot/fewshot/run.sh"), *args], capture_output=True,
                          text=True, env=env, timeout=900)


def test_mini_omniglot_recipe_without_runs_names_variable_and_option(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OMNIGLOT"}
    env.update(OMP_NUM_THREADS="1", COMPACT_SSL_TEST_DATA=str(tmp_path / "empty"))
    proc = _run_recipe("--exp_root", str(tmp_path / "exp"), "--data_root", str(tmp_path / "data"), env=env)
    assert proc.returncode == 1
    assert "the Omniglot one-shot runs were not found" in proc.stderr
    assert "Set OMNIGLOT=<folder>" in proc.stderr and "pass --omniglot <folder>" in proc.stderr
    assert "Preflight check FAILED" in proc.stderr and not (tmp_path / "data").exists()


@pytest.mark.slow
@pytest.mark.skipif(not all((OMNIGLOT / f).is_file() for f in ("all_runs.zip", "images_background_small1.zip")),
                    reason=f"Omniglot all_runs.zip / images_background_small1.zip not in {OMNIGLOT}")
def test_mini_omniglot_recipe_end_to_end(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = _run_recipe("--omniglot", str(OMNIGLOT), "--exp_root", str(tmp_path / "exp"),
                       "--data_root", str(tmp_path / "data"), env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    expdir = tmp_path / "exp" / "lp"
    for n in range(4):
        assert f"Stage {n}" in proc.stdout and (expdir / "logs" / f"stage{n}.log").is_file()
    summary = json.loads((expdir / "omniglot" / "summary.json").read_text())
    assert (summary["n_way"], summary["shots"]) == (20, 1)
    rows = {r["update"]: r for r in summary["results"]}
    baselines = {r["baseline"]: r for r in summary["baselines"]}
    assert list(rows) == ["lp"] and list(baselines) == ["random_init", "pixels", "pixel_nn"]
    assert summary["chance"] == 5.0
    rows["pixel_nn"] = baselines["pixel_nn"]
    for r in summary["results"] + summary["baselines"]:
        assert r["episode_ids"] == [f"run{i:02d}" for i in range(1, 21)]
        assert all(round(a / 5, 6).is_integer() for a in r["per_episode"])  # k of 20 queries
    assert rows["pixel_nn"]["mean"] == PIXEL_NN_28
    assert rows["lp"]["mean"] > LP_MEASURED - 10 and rows["lp"]["mean"] > rows["pixel_nn"]["mean"] + 25
    table = (expdir / "results.md").read_text()
    assert "| omniglot | baseline: raw-pixel nearest neighbour | 22.75 ± 4.74 |" in table and "| omniglot | lp |" in table
    assert "| omniglot | baseline: random-init network (lp) |" in table and "| omniglot | chance (1/20) | 5.00 |" in table
