"""ICBHI fault injection: uncuttable cycles are refused (or skipped and listed) naming the annotation
file and line, manifests are all-or-nothing, and runs where no epoch passed the sensitivity gate are
flagged by evaluation and the results table."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from audio_cls.bin import evaluate, prepare_icbhi, results
from audio_cls.data import (
    IcbhiError,
    cycle_problem,
    cycle_waves,
    load_recording,
    make_mini_icbhi,
    read_manifest,
    read_split,
    write_manifest,
)
from audio_cls.metrics import check_gate, epoch_sensitivities
from audio_cls.tasks import IcbhiTask, load_config

ROOT = Path(__file__).resolve().parents[1]
MINI_CONF = ROOT / "egs" / "mini_icbhi" / "patchmix" / "conf" / "ce.yaml"
#: line 3 of an annotation, replaced by each fault; the values the error must quote
FAULTS = {
    "zero_length": ("4.216\t4.216\t0\t0", "cycle 4.216-4.216 s must satisfy 0 <= start < end"),
    "sub_sample": ("4.2161\t4.21615\t1\t0", "cycle 4.2161-4.21615 s is shorter than one sample at 16000 Hz"),
    "after_end": ("99.5\t99.9\t0\t1", "cycle 99.5-99.9 s starts at or after the end of the recording"),
}


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    return make_mini_icbhi(tmp_path_factory.mktemp("mini_icbhi"), seed=0)


def _corpus_with_fault(mini, tmp_path: Path, fault: str) -> tuple[Path, Path]:
    """A copy of the mini corpus whose first split recording has ``FAULTS[fault]`` on line 3;
    returns (root, annotation file)."""
    root = tmp_path / "corpus"
    shutil.copytree(mini.root, root)
    name = read_split(root / "official_split.txt")[0].recording.rsplit("_", 1)[0]
    txt = next((root / "audio_and_txt_files").glob(f"{name}_*.txt"))
    lines = txt.read_text().splitlines()
    assert len(lines) >= 3
    lines[2] = FAULTS[fault][0]
    txt.write_text("\n".join(lines) + "\n")
    return root, txt


# ---------------------------------------------------------------- preparation refuses uncuttable cycles
@pytest.mark.parametrize("fault", list(FAULTS))
def test_cli_refuses_uncuttable_cycle_naming_file_and_line(mini, tmp_path, fault):
    root, txt = _corpus_with_fault(mini, tmp_path, fault)
    out = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "audio_cls.bin.prepare_icbhi", "--root", str(root), "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith(f"ERROR: {txt}:3: {FAULTS[fault][1]}"), error
    assert "--bad_cycles skip" in error
    assert not out.exists()  # nothing written: no manifest of a corpus that failed its checks


def test_skip_leaves_the_cycle_out_and_lists_it(mini, tmp_path, capsys):
    root, txt = _corpus_with_fault(mini, tmp_path, "zero_length")
    out = tmp_path / "data"
    prepare_icbhi.main(["--root", str(root), "--out", str(out), "--bad_cycles", "skip"])
    stdout = capsys.readouterr().out
    assert "skipped 1 cycles that cannot be cut (--bad_cycles skip" in stdout
    assert f"  {txt.resolve()}:3: cycle 4.216-4.216 s must satisfy 0 <= start < end" in stdout
    summary = json.loads((out / "counts.json").read_text())
    assert summary["skipped_cycles"] == [{"annotation": str(txt.resolve()), "line": 3, "start": 4.216, "end": 4.216,
                                          "problem": "cycle 4.216-4.216 s must satisfy 0 <= start < end"}]
    # 142 cycles in the clean corpus; the other cycles of the recording keep their ids
    records = [r for split in ("train", "test") for r in read_manifest(out / split / "cycles.tsv")]
    assert len(records) == 141
    stem = txt.stem.rsplit("_", 1)[0]
    ids = sorted(r.id for r in records if r.recording.startswith(stem))
    assert ids[:3] == [f"{ids[0][:-4]}_000", f"{ids[0][:-4]}_001", f"{ids[0][:-4]}_003"]


def test_cycle_problem_boundaries():
    assert cycle_problem(1.0, 1.0 + 1 / 16000, 16000, 48000) is None  # exactly one sample
    assert "shorter than one sample" in cycle_problem(1.0, 1.00005, 16000, 48000)
    # shorter than a sample and inside one sample period: the cut itself would be empty
    assert "shorter than one sample" in cycle_problem(4.21601, 4.21604, 16000, 100000)
    assert "starts at or after the end" in cycle_problem(3.0, 3.5, 16000, 48000)
    assert cycle_problem(2.9, 3.5, 16000, 48000) is None  # ends late: clipped, as in the reference
    assert "0 <= start < end" in cycle_problem(-0.1, 0.5, 16000, 48000)
    assert "0 <= start < end" in cycle_problem(0.6, 0.5, 16000, 48000)


def test_nan_times_are_refused_with_file_and_line(mini, tmp_path):
    root, txt = _corpus_with_fault(mini, tmp_path, "zero_length")
    txt.write_text(txt.read_text().replace("4.216\t4.216", "nan\t4.3"))
    with pytest.raises(SystemExit) as exit_info:
        prepare_icbhi.main(["--root", str(root), "--out", str(tmp_path / "data"), "--bad_cycles", "skip"])
    assert exit_info.value.code == 1


# ---------------------------------------------------------------- manifests: atomic, carry the source line
def _train_records(mini, tmp_path: Path) -> list:
    """Prepare the clean mini corpus into ``tmp_path/data``; the train manifest's records."""
    out = tmp_path / "data"
    prepare_icbhi.main(["--root", str(mini.root), "--out", str(out)])
    return read_manifest(out / "train" / "cycles.tsv")


def test_failed_prep_keeps_previous_manifests(mini, tmp_path, capsys):
    out = tmp_path / "data"
    prepare_icbhi.main(["--root", str(mini.root), "--out", str(out)])
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert set(before) == {Path("train/cycles.tsv"), Path("test/cycles.tsv"), Path("counts.json")}
    root, _ = _corpus_with_fault(mini, tmp_path, "sub_sample")
    with pytest.raises(SystemExit) as exit_info:
        prepare_icbhi.main(["--root", str(root), "--out", str(out)])
    assert exit_info.value.code == 1 and ":3: cycle 4.2161-4.21615 s" in capsys.readouterr().err
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_manifest_write_is_all_or_nothing(mini, tmp_path):
    records = _train_records(mini, tmp_path)
    path = tmp_path / "out" / "cycles.tsv"
    with pytest.raises(TypeError):
        write_manifest([*records[:5], "not a record"], path)  # fails after the header and 5 rows
    assert list(path.parent.iterdir()) == []


def test_manifest_names_annotation_line_and_cutting_names_it(mini, tmp_path):
    record = _train_records(mini, tmp_path)[2]
    txt = Path(record.annotation)
    assert txt.parent == (mini.root / "audio_and_txt_files").resolve() and txt.suffix == ".txt"
    line = txt.read_text().splitlines()[record.line - 1].split()
    assert (float(line[0]), float(line[1])) == (record.start, record.end) and record.source == f"{txt}:{record.line}"
    # 1.6 samples at 16 kHz passes preparation, but is empty when a config cuts at 4 kHz
    short = dataclasses.replace(record, end=record.start + 1 / 10000)
    wave = load_recording(short.audio, 4000)
    with pytest.raises(IcbhiError, match=rf"{txt.name}:{record.line}: cycle .* is shorter than one sample at 4000 Hz"):
        list(cycle_waves(wave, 4000, [(short.start, short.end)], 8000, sources=[short.source]))


def test_manifest_reader_refuses_old_header_and_bad_rows(mini, tmp_path):
    _train_records(mini, tmp_path)
    path = tmp_path / "data" / "train" / "cycles.tsv"
    lines = path.read_text().splitlines()
    old = tmp_path / "old.tsv"
    old.write_text("\n".join("\t".join(row.split("\t")[:-2]) for row in lines) + "\n")
    with pytest.raises(IcbhiError, match=r"old.tsv:1: header .* rerun data preparation"):
        read_manifest(old)
    fields = lines[4].split("\t")
    fields[4] = fields[3]  # end = start
    path.write_text("\n".join([*lines[:4], "\t".join(fields), *lines[5:]]) + "\n")
    with pytest.raises(IcbhiError, match=rf"cycles.tsv:5: cycle .* of {fields[-2]}:{fields[-1]} does not satisfy"):
        read_manifest(path)


# ---------------------------------------------------------------- the sensitivity gate
def _history(path: Path, sensitivities: list[float]) -> Path:
    """A metric history as training writes it: training-step rows without val_se, one row per epoch with it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["epoch", "step", "train_loss_step", "val_score", "val_se", "val_selection"])
        for epoch, se in enumerate(sensitivities):
            writer.writerow([epoch, 10 * epoch + 4, 1.2, "", "", ""])
            writer.writerow([epoch, 10 * epoch + 9, "", 50 + se / 2, se, 50 + se / 2 if se > 5 else -1.0])
    return path


def test_gate_check_from_history(tmp_path):
    history = _history(tmp_path / "csv" / "metrics.csv", [0.0, 3.1, 5.0])
    assert epoch_sensitivities(history) == [0.0, 3.1, 5.0]
    gate = check_gate(epoch_sensitivities(history), 5.0, str(history))
    assert (gate.passed, gate.best_sensitivity, gate.epochs) == (False, 5.0, 3)  # 5.0 is not above the gate
    assert check_gate([0.0, 5.01], 5.0, "x").passed
    history.write_text(history.read_text().replace(",3.1,", ",nan,"))
    with pytest.raises(ValueError, match=r"metrics.csv:5: val_se must be a finite number, got 'nan'"):
        epoch_sensitivities(history)


def _scores(seed: int, score: float, gate: dict | None) -> dict:
    result = {"seed": seed, "epoch": 1 if gate and not gate["passed"] else 3, "method": "ce", "specificity": 60.0,
              "sensitivity": 2 * score - 60.0, "score": score,
              "two_class": {"specificity": 60.0, "sensitivity": 40.0, "score": 50.0}}
    return {**result, "gate": gate} if gate is not None else result


def test_results_table_flags_seeds_without_gate(tmp_path, capsys):
    exp = tmp_path / "exp"
    gates = {1: {"min_sensitivity": 5.0, "passed": True, "best_sensitivity": 41.0, "epochs": 3, "source": "h1"},
             2: {"min_sensitivity": 5.0, "passed": False, "best_sensitivity": 3.1, "epochs": 3, "source": "h2"}}
    for seed, score in ((1, 55.0), (2, 31.0)):
        for which in ("best", "last"):
            path = exp / "ce" / f"seed{seed}" / "eval" / which / "scores.json"
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps(_scores(seed, score, gates[seed] if which == "best" else None)))
    results.main(["--exp", str(exp)])
    assert "WARNING: ce (best): seeds [2] passed no sensitivity gate" in capsys.readouterr().err
    rows = json.loads((exp / "results.json").read_text())
    best, last = rows
    assert (best["selection"], best["gate_passed"], best["gate_failed_seeds"]) == ("best", False, [2])
    assert best["metrics"]["score"]["values"] == [55.0, 31.0] and best["metrics"]["score"]["mean"] == 43.0
    assert best["gate_note"].startswith("no epoch of ce/seed2 passed the sensitivity gate (Se > 5 %; the highest Se "
                                        "was 3.10 % over 3 epochs), so its best checkpoint (epoch 1) is the fallback")
    assert (last["selection"], last["gate_passed"], last["gate_failed_seeds"]) == ("last", None, [])
    table = (exp / "results.md").read_text().splitlines()
    assert table[6] == ("| ce | best epoch on test (paper protocol) | 1,2† | 60.00 ± 0.00 | 26.00 ± 33.94 | 43.00 ± 16.97 | "
                        "40.00 ± 0.00 | 50.00 ± 0.00 |")
    assert table[7].startswith("| ce | last epoch | 1,2 |")
    # scores without a confusion matrix: the all-normal reference is Sp 100 / Se 0 whatever the counts
    assert table[8] == ("| one-class prediction (reference: every cycle normal) | none | - | "
                        "100.00 | 0.00 | 50.00 | 0.00 | 50.00 |")
    assert table[10] == "† Sensitivity gate not passed (`gate_passed: false` in results.json):"
    assert table[11].startswith("- ce, best epoch on test (paper protocol): no epoch of ce/seed2 passed")
    # every seed passing: the row says so and the table has no footnote
    (exp / "ce" / "seed2" / "eval" / "best" / "scores.json").write_text(json.dumps(_scores(2, 31.0, gates[1])))
    results.main(["--exp", str(exp)])
    assert json.loads((exp / "results.json").read_text())[0]["gate_passed"] is True
    assert "†" not in (exp / "results.md").read_text()


def test_evaluate_warns_and_records_failed_gate(mini, tmp_path, capsys):
    data = tmp_path / "data"
    prepare_icbhi.main(["--root", str(mini.root), "--out", str(data)])
    config = load_config(MINI_CONF, [f"data.train={data}/train/cycles.tsv", f"data.test={data}/test/cycles.tsv",
                                     f"data.cache_dir={tmp_path}/features"])
    torch.manual_seed(0)
    task = IcbhiTask(config, [30, 22, 15, 18])
    run = tmp_path / "exp" / "ce" / "seed1"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams), "epoch": 0},
               run / "checkpoints" / "best.ckpt")
    _history(run / "csv" / "metrics.csv", [0.0, 3.1, 2.0])
    for attempt in ("evaluated", "cached"):
        evaluate.main(["--expdir", str(run.parent), "--which", "best"])
        err = capsys.readouterr().err
        assert (f"WARNING: no epoch of {run} passed the sensitivity gate (Se > 5 %; the highest Se was 3.10 % over 3 "
                "epochs), so its best checkpoint (epoch 1) is the fallback") in err, attempt
    scores = json.loads((run / "eval" / "best" / "scores.json").read_text())
    assert scores["gate"] == {"min_sensitivity": 5.0, "passed": False, "best_sensitivity": 3.1, "epochs": 3,
                              "source": str(run / "csv" / "metrics.csv")}
    assert scores["num_cycles"] == 57
