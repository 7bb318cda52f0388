"""The mini speech benchmark's results contract: rows, seeds, chance, retention."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from audio_compress.bin import mini_benchmark
from audio_compress.superb.benchmark import TASKS, build_benchmark, chance_levels, render_markdown, retention
from compact_ssl.io import write_json

ROWS = ("fbank", "teacher_random", "teacher", "star", "armhubert", "distilhubert")
STUDENTS = ("star", "armhubert", "distilhubert")
# per row: KS acc, SID acc, IC acc, PR PER of seed 1; seed 2 adds 2 to every value
SEED1 = {"fbank": (40, 30, 20, 80), "teacher_random": (35, 25, 15, 90), "teacher": (80, 70, 60, 40),
         "star": (70, 50, 40, 50), "armhubert": (60, 50, 30, 60), "distilhubert": (40, 30, 20, 80)}


def _fake_runs(root: Path) -> list[Path]:
    seeds = []
    for offset, name in ((0, "seed1"), (2, "seed2")):
        for row, values in SEED1.items():
            for (task, (key, _, _)), value in zip(TASKS.items(), values):
                write_json(root / name / row / task / "metrics.json",
                           {"upstream": row, "task": task, "metrics": {key: value + offset}})
        seeds.append(root / name)
    return seeds


def _fake_layouts(root: Path) -> Path:
    write_json(root / "ks" / "layout.json", {"test_classes": [f"k{i}" for i in range(10)] + ["_silence_"]})
    write_json(root / "sid" / "layout.json", {"num_speakers": 16})
    write_json(root / "ic" / "layout.json", {"intents": [f"a_b_{i}" for i in range(8)]})
    return root


def test_contract_means_stds_and_retention(tmp_path):
    result = build_benchmark(_fake_runs(tmp_path), {r: r for r in ROWS}, STUDENTS, chance_levels(_fake_layouts(tmp_path)))
    assert result["tasks"] == {"ks": {"metric": "acc", "higher_is_better": True, "chance": 100 / 11},
                               "sid": {"metric": "acc", "higher_is_better": True, "chance": 6.25},
                               "ic": {"metric": "acc", "higher_is_better": True, "chance": 12.5},
                               "pr": {"metric": "per", "higher_is_better": False, "chance": 100.0}}
    assert list(result["rows"]) == list(ROWS)
    star_ks = result["rows"]["star"]["ks"]
    assert star_ks["values"] == [70.0, 72.0] and star_ks["mean"] == 71.0
    assert star_ks["std"] == pytest.approx(statistics.stdev([70, 72]))  # sqrt(2)
    # star: KS (71-41)/(81-41) = 0.75, SID 20/40 = 0.5, IC 20/40 = 0.5, PR (82-52)/(82-42) = 0.75
    assert result["retention"]["star"] == pytest.approx((0.75 + 0.5 + 0.5 + 0.75) / 4)
    # armhubert: 0.5, 0.5, 0.25, 0.5; distilhubert equals fbank: 0
    assert result["retention"]["armhubert"] == pytest.approx(0.4375)
    assert result["retention"]["distilhubert"] == 0.0
    # an error rate's sign cancels in the ratio: recomputing on negated PER gives the same
    assert retention(result["rows"], "star") == result["retention"]["star"]


def test_missing_run_and_flat_teacher_are_refused(tmp_path):
    seeds = _fake_runs(tmp_path)
    (seeds[1] / "star" / "pr" / "metrics.json").unlink()
    with pytest.raises(FileNotFoundError, match="PR_per of upstream 'star'"):
        build_benchmark(seeds, {r: r for r in ROWS}, STUDENTS, {t: 1.0 for t in TASKS})
    rows = {r: {t: {"mean": 50.0} for t in TASKS} for r in ("fbank", "teacher", "star")}
    with pytest.raises(ValueError, match="teacher equals fbank on ks"):
        retention(rows, "star")


def test_undefined_retention_is_null_and_noted(tmp_path):
    seeds = _fake_runs(tmp_path)
    for seed in seeds:  # the teacher at fbank's SID accuracy in every seed
        for row in ("fbank", "teacher"):
            write_json(seed / row / "sid" / "metrics.json", {"upstream": row, "task": "sid", "metrics": {"SID_acc": 6.25}})
    result = build_benchmark(seeds, {r: r for r in ROWS}, STUDENTS, {t: 1.0 for t in TASKS})
    assert result["retention"] == {"star": None, "armhubert": None, "distilhubert": None}
    assert len(result["notes"]) == 3 and "teacher equals fbank on sid" in result["notes"][0]
    md = render_markdown(result)
    assert "Students by retention: undefined" in md and "| star | 71.0 ± 1.4 |" in md and "| undefined |" in md


def test_cli_writes_json_md_png(tmp_path, capsys):
    seeds = _fake_runs(tmp_path / "runs")
    rc = mini_benchmark.main(["--metrics", *map(str, seeds), "--layouts", str(_fake_layouts(tmp_path / "lay")),
                              "--rows", *ROWS, "--students", *STUDENTS, "--out", str(tmp_path / "out")])
    assert rc == 0
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert doc["retention"]["star"] == pytest.approx(0.625)
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| chance | 9.1 | 6.2 | 12.5 | 100.0 | |" in md
    assert "| star | 71.0 ± 1.4 | 51.0 ± 1.4 | 41.0 ± 1.4 | 51.0 ± 1.4 | 0.62 |" in md
    assert "star (0.62) > armhubert (0.44) > distilhubert (0.00)" in md and doc["notes"] == []
    assert (tmp_path / "out" / "results.png").read_bytes()[:4] == b"\x89PNG"


def _check_contract(doc: dict) -> None:
    assert set(doc["tasks"]) == {"ks", "sid", "ic", "pr"}
    assert doc["tasks"]["pr"]["metric"] == "per" and doc["tasks"]["pr"]["higher_is_better"] is False
    assert all(doc["tasks"][t]["metric"] == "acc" and doc["tasks"][t]["higher_is_better"] for t in ("ks", "sid", "ic"))
    assert set(doc["rows"]) == set(ROWS)
    for cells in doc["rows"].values():
        assert set(cells) == set(TASKS)
        for cell in cells.values():
            assert len(cell["values"]) == 2
            assert cell["mean"] == pytest.approx(statistics.fmean(cell["values"]))
            assert cell["std"] == pytest.approx(statistics.stdev(cell["values"]))
    for student in STUDENTS:
        if doc["retention"][student] is None:  # the teacher equals fbank on a task: noted, not a number
            assert any(student in note for note in doc["notes"])
            continue
        ratios = []
        for task, info in doc["tasks"].items():
            sign = 1 if info["higher_is_better"] else -1
            s, f, t = (sign * doc["rows"][r][task]["mean"] for r in (student, "fbank", "teacher"))
            ratios.append((s - f) / (t - f))
        assert doc["retention"][student] == pytest.approx(sum(ratios) / len(ratios))
