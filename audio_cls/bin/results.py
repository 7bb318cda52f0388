"""Results table over seeds: ``python -m audio_cls.bin.results --exp exp/<tag>``.

Reads ``<exp>/<method>/seed*/eval/<which>/scores.json`` and writes ``<exp>/results.md`` and
``<exp>/results.json`` with, per method folder and checkpoint selection, mean and standard deviation
over seeds of Sp, Se and Score (4-class) and of the 2-class Se and Score. The standard deviation is
the sample one (n - 1); with a single seed it is left out.

Selections (:data:`SELECTIONS`): ``best`` is the best epoch chosen on the test set itself (the paper
protocol, test-set selection); ``best_val`` the best epoch chosen on patients held out of the
training set (the clean protocol: a run with ``data.val_fraction > 0``, whose ``best`` evaluation
says ``selected_on: validation``); ``last`` the final epoch (no selection). Evaluations from before
``selected_on`` was recorded are paper-protocol ones.

Sensitivity gate: the ``best`` selection only considers epochs whose Se passes
``trainer.min_sensitivity``. A seed where no epoch passed (``gate.passed`` false in its
``scores.json``, see :mod:`audio_cls.bin.evaluate`) has a fallback "best" epoch; it stays in the
mean but is flagged: its seed gets a ``†`` and a footnote in ``results.md``, and the row in
``results.json`` gets ``gate_passed: false``, ``gate_failed_seeds`` and a ``gate_note`` sentence.
``gate_passed`` is true when every seed passed and null for rows without gate checks (``last``).

Reference row: ``results.md`` ends its table with the best prediction of one class for every cycle
(:func:`one_class_reference`): all "normal", Sp 100 / Se 0, Score 50 (4-class and 2-class) on any
test set holding normal and abnormal cycles; a method must beat it to have learned anything.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from audio_cls.data.icbhi import CLASS_NAMES
from audio_cls.metrics import GateCheck, IcbhiScores, scores_from_confusion
from compact_ssl.io import atomic_write_text

SELECTIONS = {"best": "best epoch on test (paper protocol)", "best_val": "best epoch on validation (clean protocol)",
              "last": "last epoch"}
METRICS = (("specificity", "Sp"), ("sensitivity", "Se"), ("score", "Score"),
           ("two_class.sensitivity", "Se 2-cls"), ("two_class.score", "Score 2-cls"))
#: marks a seed whose best epoch is a fallback (no epoch passed the sensitivity gate)
GATE_MARK = "†"


def _value(result: dict, key: str) -> float:
    for part in key.split("."):
        result = result[part]
    return float(result)


def collect(exp: str | Path) -> list[dict]:
    """One row per (method folder, selection) with per-metric mean / std / per-seed values."""
    exp = Path(exp)
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    runs: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for path in sorted(exp.glob("*/seed*/eval/*/scores.json")):
        method, which, result = path.parents[3].name, path.parent.name, json.loads(path.read_text())
        if which == "best" and result.get("selected_on") == "validation":
            which = "best_val"
        groups[(method, which)].append(result)
        runs[(method, which)].append(path.parents[2].relative_to(exp))  # <method>/seed<N>
    rows = []
    for (method, which), results in sorted(groups.items()):
        row = {"method": method, "selection": which, "seeds": [r["seed"] for r in results],
               "test_counts": _test_counts(results),
               "epochs": [r["epoch"] for r in results], **_gate_fields(results, runs[(method, which)]),
               "metrics": {}}
        for key, _ in METRICS:
            values = [_value(r, key) for r in results]
            row["metrics"][key] = {
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else None,
                "values": values,
            }
        rows.append(row)
    return rows


def _test_counts(results: list[dict]) -> list[int] | None:
    """Test cycles per class (the confusion matrix's row sums; every seed sees the same test set), or
    None for scores without a confusion matrix."""
    confusion = results[0].get("confusion")
    return None if confusion is None else [int(sum(r)) for r in confusion]


def _gate_fields(results: list[dict], runs: list[Path]) -> dict:
    """``gate_passed`` / ``gate_failed_seeds`` / ``gate_note`` of one row (see the module docstring)."""
    checked = [(result, run) for result, run in zip(results, runs, strict=True) if "gate" in result]
    if not checked:
        return {"gate_passed": None, "gate_failed_seeds": [], "gate_note": ""}
    failed = [(result, run) for result, run in checked if not result["gate"]["passed"]]
    note = " ".join(f"{GateCheck(**result['gate']).explain(run, result['epoch'])}." for result, run in failed)
    if failed:
        note += " Flagged seeds are still averaged into the row's mean ± std; retrain them or leave them out before reporting."
    return {"gate_passed": None if len(checked) < len(results) and not failed else not failed,
            "gate_failed_seeds": [result["seed"] for result, _ in failed], "gate_note": note}


def one_class_reference(class_counts: list[int]) -> tuple[int, IcbhiScores, IcbhiScores]:
    """The best constant prediction (every cycle one class, the one with the highest 4-class Score) on a
    test set with ``class_counts`` cycles per class: that class, its 4-class and its 2-class scores."""
    counts = np.asarray(class_counts, dtype=np.float64)
    best = None
    for predicted in range(len(counts)):
        cm = np.zeros((len(counts), len(counts)))
        cm[:, predicted] = counts
        scores = (predicted, scores_from_confusion(cm), scores_from_confusion(cm, two_class_eval=True))
        if best is None or scores[1].score > best[1].score:
            best = scores
    return best


def _reference_row(rows: list[dict]) -> str:
    """The table row of :func:`one_class_reference` on the evaluated test set (scores without a
    confusion matrix: one cycle per class, which gives the same Score 50)."""
    counts = next((row["test_counts"] for row in rows if row["test_counts"]), [1, 1, 1, 1])
    predicted, four, two = one_class_reference(counts)
    values = (four.specificity, four.sensitivity, four.score, two.sensitivity, two.score)
    return (f"| one-class prediction (reference: every cycle {CLASS_NAMES[predicted]}) | none | - | "
            + " | ".join(f"{v:.2f}" for v in values) + " |")


def to_markdown(rows: list[dict], title: str) -> str:
    """The results as a Markdown table (percent, mean +- sample std over seeds)."""
    lines = [f"# {title}", "",
             "ICBHI official 60/40 split, all test cycles; values in %, mean ± std over seeds. Checkpoint selection: "
             "best epoch on test = chosen on the test set itself (test-set selection, the paper protocol; optimistic); "
             "best epoch on validation = chosen on patients held out of the training set (clean protocol); "
             "last epoch = no selection. The last row is the trivial reference: the best prediction of one class for "
             "every cycle.", "",
             "| method | selection | seeds | " + " | ".join(label for _, label in METRICS) + " |",
             "|---|---|---|" + "---|" * len(METRICS)]
    for row in rows:
        cells = []
        for key, _ in METRICS:
            m = row["metrics"][key]
            cells.append(f"{m['mean']:.2f}" + ("" if m["std"] is None else f" ± {m['std']:.2f}"))
        seeds = ",".join(f"{s}{GATE_MARK}" if s in row["gate_failed_seeds"] else str(s) for s in row["seeds"])
        lines.append(f"| {row['method']} | {SELECTIONS.get(row['selection'], row['selection'])} | {seeds} | "
                     + " | ".join(cells) + " |")
    lines.append(_reference_row(rows))
    flagged = [row for row in rows if row["gate_failed_seeds"]]
    if flagged:
        lines += ["", f"{GATE_MARK} Sensitivity gate not passed (`gate_passed: false` in results.json):"]
        lines += [f"- {row['method']}, {SELECTIONS.get(row['selection'], row['selection'])}: {row['gate_note']}"
                  for row in flagged]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", required=True, help="experiment folder holding <method>/seed*/eval/")
    parser.add_argument("--title", default="", help="table title (default: the folder name)")
    args = parser.parse_args(argv)
    exp = Path(args.exp)
    rows = collect(exp)
    if not rows:
        raise SystemExit(f"ERROR: no */seed*/eval/*/scores.json under {exp}; run evaluation (stage 4) first")
    markdown = to_markdown(rows, args.title or exp.name)
    atomic_write_text(exp / "results.md", markdown)
    atomic_write_text(exp / "results.json", json.dumps(rows, indent=2) + "\n")
    print(markdown)
    print(f"Wrote {exp / 'results.md'} and {exp / 'results.json'}")
    for row in rows:
        if row["gate_failed_seeds"]:
            print(f"WARNING: {row['method']} ({row['selection']}): seeds {row['gate_failed_seeds']} passed no "
                  "sensitivity gate; flagged with † in results.md", file=sys.stderr)


if __name__ == "__main__":
    main()
