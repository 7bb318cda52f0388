"""The mini speech benchmark table: mini SUPERB over several downstream seeds, with chance levels and
the students' retention of what the teacher gained over fbank.

``results.json`` follows this contract::

    {"tasks": {"ks": {"metric": "acc", "higher_is_better": true, "chance": float}, "sid": ..., "ic": ...,
               "pr": {"metric": "per", "higher_is_better": false, "chance": 100.0}},
     "rows": {"<row>": {"<task>": {"mean": float, "std": float, "values": [float, ...]}}},
     "retention": {"<student>": float}}

Rows are ``fbank``, ``teacher_random``, ``teacher`` and the students; ``std`` is the sample standard
deviation over the downstream seeds (0 for one seed). Retention of a student is the mean over tasks of
``(student - fbank) / (teacher - fbank)`` on the seed means, error rates negated (1: the student kept
all of the teacher's gain over fbank, 0: none of it); ``null`` (with a note in ``notes``) when the
teacher equals fbank on a task, where the ratio is undefined.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

from audio_compress.superb.results import collect_metrics
from compact_ssl.io import atomic_path, atomic_write_text, read_json, write_json

#: benchmark task -> (metric key of the metrics files, metric name, higher is better)
TASKS: dict[str, tuple[str, str, bool]] = {
    "ks": ("KS_acc", "acc", True),
    "sid": ("SID_acc", "acc", True),
    "ic": ("IC_acc", "acc", True),
    "pr": ("PR_per", "per", False),
}
BASELINE, TEACHER = "fbank", "teacher"
REFERENCE_ROWS = (BASELINE, "teacher_random", TEACHER)


def chance_levels(layout_root: str | Path) -> dict[str, float]:
    """Chance level (%) of each task from the mini layouts in ``layout_root``: one over the number of
    classes (KS: the test classes, ``_silence_`` included; SID: the speakers; IC: the intents) and,
    for PR, the 100 % PER of an empty output."""
    root = Path(layout_root)
    ks = read_json(root / "ks" / "layout.json")
    sid = read_json(root / "sid" / "layout.json")
    ic = read_json(root / "ic" / "layout.json")
    return {"ks": 100.0 / len(ks["test_classes"]), "sid": 100.0 / sid["num_speakers"],
            "ic": 100.0 / len(ic["intents"]), "pr": 100.0}


def _stats(values: Sequence[float]) -> dict:
    values = [float(v) for v in values]
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "values": values}


def retention(rows: Mapping[str, Mapping[str, Mapping]], student: str) -> float:
    """Mean over the tasks of ``(student - fbank) / (teacher - fbank)`` (seed means; the sign of an error
    rate cancels in the ratio, it is negated for clarity). Raises when the teacher equals fbank on a task."""
    ratios = []
    for task, (_, _, higher) in TASKS.items():
        sign = 1.0 if higher else -1.0
        s, f, t = (sign * rows[name][task]["mean"] for name in (student, BASELINE, TEACHER))
        if t == f:
            raise ValueError(f"retention of {student}: the teacher equals fbank on {task} ({t}); the ratio is undefined")
        ratios.append((s - f) / (t - f))
    return statistics.fmean(ratios)


def build_benchmark(seed_roots: Sequence[str | Path], rows: Mapping[str, str], students: Sequence[str],
                    chance: Mapping[str, float]) -> dict:
    """The results document from the mini SUPERB metrics of every seed.

    Args:
        seed_roots: one SUPERB ``--out_root`` per downstream seed (``<root>/<upstream>/<task>/metrics.json``).
        rows: benchmark row name -> upstream name in the metrics files (its tag).
        students: the rows that are students (get a retention).
        chance: chance level per task (:func:`chance_levels`).
    """
    per_seed = [collect_metrics([root]) for root in seed_roots]
    table: dict[str, dict] = {}
    for row, upstream in rows.items():
        table[row] = {}
        for task, (key, _, _) in TASKS.items():
            missing = [str(root) for root, metrics in zip(seed_roots, per_seed) if key not in metrics.get(upstream, {})]
            if missing:
                raise FileNotFoundError(f"no {key} of upstream {upstream!r} (row {row}) under {', '.join(missing)}; "
                                        "rerun the SUPERB stage of the benchmark")
            table[row][task] = _stats([metrics[upstream][key] for metrics in per_seed])
    kept, notes = {}, []
    for student in students:
        try:
            kept[student] = retention(table, student)
        except ValueError as err:
            kept[student] = None
            notes.append(str(err))
    return {
        "tasks": {task: {"metric": metric, "higher_is_better": higher, "chance": float(chance[task])}
                  for task, (_, metric, higher) in TASKS.items()},
        "rows": table,
        "retention": kept,
        "seeds": len(seed_roots),
        "notes": notes,
    }


def render_markdown(result: Mapping, title: str = "Mini speech benchmark") -> str:
    """The table: one row per upstream, ``mean ± std`` per task, chance and retention."""
    tasks = result["tasks"]
    head = [f"{t.upper()} {info['metric'].upper()} {'↑' if info['higher_is_better'] else '↓'}" for t, info in tasks.items()]
    lines = [f"# {title}", "",
             f"Mini SUPERB on the mini corpus, mean ± std over {result['seeds']} downstream seeds (%). "
             "Retention: mean over tasks of (student - fbank) / (teacher - fbank), error rates negated.", "",
             "| upstream | " + " | ".join(head) + " | retention |",
             "|---|" + "---:|" * (len(head) + 1),
             "| chance | " + " | ".join(f"{info['chance']:.1f}" for info in tasks.values()) + " | |"]
    for row, cells in result["rows"].items():
        values = " | ".join(f"{cells[t]['mean']:.1f} ± {cells[t]['std']:.1f}" for t in tasks)
        kept = result["retention"].get(row)
        shown = "" if row not in result["retention"] else "undefined" if kept is None else f"{kept:.2f}"
        lines.append(f"| {row} | {values} | {shown} |")
    defined = {s: r for s, r in result["retention"].items() if r is not None}
    ranking = sorted(defined, key=defined.get, reverse=True)
    lines += ["", "Students by retention: " + (" > ".join(f"{s} ({defined[s]:.2f})" for s in ranking) or "undefined")]
    lines += [f"- {note}" for note in result.get("notes", [])]
    return "\n".join(lines) + "\n"


def plot_benchmark(result: Mapping, path: str | Path) -> Path:
    """One panel per task: a bar per row (mean, std as error bar), chance as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks, rows = result["tasks"], list(result["rows"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.4))
    for ax, (task, info) in zip(axes, tasks.items()):
        means = [result["rows"][r][task]["mean"] for r in rows]
        stds = [result["rows"][r][task]["std"] for r in rows]
        ax.bar(range(len(rows)), means, yerr=stds, color=[f"C{i}" for i in range(len(rows))], capsize=3)
        ax.axhline(info["chance"], color="k", linestyle="--", linewidth=1, label="chance")
        ax.set_xticks(range(len(rows)), rows, rotation=60, ha="right", fontsize=8)
        ax.set_title(f"{task.upper()} {info['metric']} ({'higher' if info['higher_is_better'] else 'lower'} is better)",
                     fontsize=9)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return Path(path)


def write_benchmark(result: Mapping, out_dir: str | Path, title: str = "Mini speech benchmark") -> dict[str, Path]:
    """``results.{json,md,png}`` in ``out_dir`` (each written atomically)."""
    out = Path(out_dir)
    paths = {"json": out / "results.json", "md": out / "results.md", "png": out / "results.png"}
    write_json(paths["json"], result)
    atomic_write_text(paths["md"], render_markdown(result, title))
    plot_benchmark(result, paths["png"])
    return paths
