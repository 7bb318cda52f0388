"""The mini speech benchmark: mini SUPERB in probe mode (:mod:`audio_compress.superb.probe`) for every row
and downstream seed, with chance levels and the students' retention of what the teacher gained over fbank.

``results.json`` follows this contract::

    {"tasks": {"ks": {"metric": "acc", "higher_is_better": true, "chance": float}, "sid": ..., "ic": ...,
               "pr": {"metric": "per", "higher_is_better": false, "chance": 100.0}},
     "rows": {"<row>": {"<task>": {"mean": float, "std": float, "values": [float, ...]}}},
     "retention": {"<student>": float}, "transfer": {"<student>": float}}

Rows are ``fbank``, ``teacher_random``, ``teacher`` and the students; ``std`` is the sample standard
deviation over the downstream seeds (0 for one seed). Retention of a student is the mean over tasks of
``(student - fbank) / (teacher - fbank)`` on the seed means, error rates negated (1: the student kept
all of the teacher's gain over fbank, 0: none of it); ``null`` (with a note in ``notes``) when the
teacher equals fbank on a task, where the ratio is undefined. ``transfer`` is the same ratio with the
random teacher in place of fbank, the teacher before pretraining (same architecture and front end, random
Transformer): the share of what pretraining gave the teacher that distillation passed on to the student,
which stays meaningful when the mini teacher is below fbank.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import statistics
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from audio_compress.superb.commands import UpstreamSpec
from audio_compress.superb.probe import PROBE_TASKS, ProbeConfig, feature_cache, fit_probe, load_features, write_features
from compact_ssl.io import atomic_path, atomic_write_text, read_json, write_json

#: benchmark task -> (metric name, higher is better)
TASKS: dict[str, tuple[str, bool]] = {task: (metric, higher) for task, (_, metric, higher) in PROBE_TASKS.items()}
BASELINE, RANDOM, TEACHER = "fbank", "teacher_random", "teacher"
REFERENCE_ROWS = (BASELINE, RANDOM, TEACHER)


def _stats(values: Sequence[float]) -> dict:
    values = [float(v) for v in values]
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "values": values}


def retention(rows: Mapping[str, Mapping[str, Mapping]], student: str, baseline: str = BASELINE) -> float:
    """Mean over the tasks of ``(student - baseline) / (teacher - baseline)`` (seed means; the sign of an
    error rate cancels in the ratio, it is negated for clarity). The baseline is fbank for the retention
    and the random teacher for the transfer. Raises when the teacher equals the baseline on a task."""
    ratios = []
    for task, (_, higher) in TASKS.items():
        sign = 1.0 if higher else -1.0
        s, f, t = (sign * rows[name][task]["mean"] for name in (student, baseline, TEACHER))
        if t == f:
            raise ValueError(f"retention of {student} over {baseline}: the teacher equals {baseline} on {task} ({t}); "
                             "the ratio is undefined")
        ratios.append((s - f) / (t - f))
    return statistics.fmean(ratios)


#: the retention a student must reach to count as distilled (the benchmark's acceptance level)
RETENTION_GOAL = 0.7


def beats(a: Mapping, b: Mapping, higher: bool, sigmas: float = 0.0) -> bool:
    """Whether the cell ``a`` beats ``b`` by more than ``sigmas`` standard deviations of the seeds (the
    larger of the two rows' stds)."""
    margin = (a["mean"] - b["mean"]) * (1.0 if higher else -1.0)
    return margin > sigmas * max(a["std"], b["std"])


def checks(table: Mapping[str, Mapping[str, Mapping]], kept: Mapping[str, float | None]) -> dict:
    """What the benchmark asks, per task: the pretrained teacher above fbank and above the random teacher by
    more than two seed standard deviations; every student above fbank; retention at least
    :data:`RETENTION_GOAL`, which counts only when the teacher is above fbank on every task (a ratio of
    two losses to fbank is no retention)."""
    def per_task(a: str, b: str, sigmas: float) -> dict[str, bool]:
        return {task: beats(table[a][task], table[b][task], higher, sigmas) for task, (_, higher) in TASKS.items()}

    # a retention is a share of the teacher's gain over fbank: with no gain on some task it measures nothing
    teacher_gains = all(per_task(TEACHER, BASELINE, 0.0).values())
    return {
        "teacher_beats_fbank_2std": per_task(TEACHER, BASELINE, 2.0),
        "teacher_beats_random_2std": per_task(TEACHER, "teacher_random", 2.0),
        "student_beats_fbank": {s: per_task(s, BASELINE, 0.0) for s in kept},
        "retention_reached": {s: teacher_gains and r is not None and r >= RETENTION_GOAL for s, r in kept.items()},
    }


def summarise(values: Mapping[str, Mapping[str, Sequence[float]]], students: Sequence[str],
              chance: Mapping[str, float]) -> dict:
    """The results document from ``values[row][task]`` = the test metric of every downstream seed."""
    seeds = {len(v) for cells in values.values() for v in cells.values()}
    if len(seeds) != 1:
        raise ValueError(f"every row and task needs the same number of seeds, got {sorted(seeds)}")
    for row, cells in values.items():
        missing = sorted(set(TASKS) - set(cells))
        if missing:
            raise ValueError(f"row {row} has no result for {', '.join(missing)}")
    table = {row: {task: _stats(cells[task]) for task in TASKS} for row, cells in values.items()}
    kept, passed, notes = {}, {}, []
    for student in students:
        for ratios, baseline in ((kept, BASELINE), (passed, RANDOM)):
            try:
                ratios[student] = retention(table, student, baseline)
            except ValueError as err:
                ratios[student] = None
                notes.append(str(err))
    below = [t for t, (_, higher) in TASKS.items() if students and not beats(table[TEACHER][t], table[BASELINE][t], higher)]
    if below:
        notes.append(f"the teacher is not above fbank on {', '.join(t.upper() for t in below)}: the retentions are "
                     "ratios of losses to fbank there, not shares of a gain")
    return {
        "tasks": {task: {"metric": metric, "higher_is_better": higher, "chance": float(chance[task])}
                  for task, (metric, higher) in TASKS.items()},
        "rows": table,
        "retention": kept,
        "transfer": passed,
        "seeds": seeds.pop(),
        "checks": checks(table, kept),
        "notes": notes,
    }


def _probe_job(job: tuple) -> tuple[str, str, int, dict]:
    """One downstream run (a worker process): load the cached features, fit, write the result file."""
    row, task, seed, dirs, feature_files, config, result_file, key = job
    torch.set_num_threads(1)
    feats = {split: load_features(path) for split, path in feature_files.items()}
    result = fit_probe(task, feats, dirs, seed, config) | {"key": key, "row": row, "task": task, "seed": seed}
    write_json(result_file, result)
    return row, task, seed, result


def _features_job(job: tuple) -> None:
    """The features of one upstream on one split (a worker process), written to their cache file."""
    spec, data_dir, cache = job
    torch.set_num_threads(1)
    write_features(spec, data_dir, cache)


def run_probes(rows: Mapping[str, UpstreamSpec], data_dirs: Mapping[str, str | Path], seeds: Sequence[int],
               out_dir: str | Path, config: ProbeConfig | None = None, nj: int = 1) -> dict[str, dict[str, list[float]]]:
    """Features of every row and split not cached yet (in ``out_dir/features``), then every (row, task, seed)
    probe, both in ``nj`` processes; each probe's result in ``out_dir/probes/<row>/<task>/seed<N>.json``. A
    result whose key (features, probe config, seed) matches is reused, so a rerun or a resumed run repeats
    nothing finished. Returns ``values[row][task]``, one test metric per seed."""
    config = config or ProbeConfig()
    out, dirs = Path(out_dir), {k: str(v) for k, v in data_dirs.items()}
    # each cache file named once (its name hashes the checkpoint's bytes and the audio files' stats)
    caches = {row: {split: feature_cache(spec, d, out / "features") for split, d in dirs.items()}
              for row, spec in rows.items()}
    missing = [(rows[row], dirs[split], cache) for row, files in caches.items() for split, cache in files.items()
               if not cache.is_file()]
    _run_jobs(_features_job, missing, nj, "features")
    jobs, values = [], {row: {task: [None] * len(seeds) for task in TASKS} for row in rows}
    for row in rows:
        files = {split: str(cache) for split, cache in caches[row].items()}
        feats_key = "|".join(Path(f).name for f in files.values())
        for task in TASKS:
            for i, seed in enumerate(seeds):
                key = hashlib.sha256(json.dumps([feats_key, asdict(config), task, seed]).encode()).hexdigest()[:16]
                result_file = out / "probes" / row / task / f"seed{seed}.json"
                done = read_json(result_file) if result_file.is_file() else {}
                if done.get("key") == key:
                    values[row][task][i] = done["test"]
                else:
                    jobs.append((row, task, seed, dirs, files, config, str(result_file), key))
    # the longest jobs (phone recognition, fbank) first, so that the pool ends together
    jobs.sort(key=lambda j: (j[1] != "pr", j[0] != BASELINE))
    for row, task, seed, result in _run_jobs(_probe_job, jobs, nj, "probes"):
        values[row][task][list(seeds).index(seed)] = result["test"]
    return values


def _run_jobs(fn, jobs: Sequence[tuple], nj: int, desc: str) -> list:
    """``fn`` over ``jobs`` in ``nj`` forked processes (in this one when there is nothing to share), with a
    progress bar; the results in the order they finish."""
    parallel = nj > 1 and len(jobs) > 1
    with (multiprocessing.get_context("fork").Pool(nj) if parallel else nullcontext()) as pool, \
            tqdm(total=len(jobs), desc=desc, unit="run", disable=not jobs) as bar:
        results = []
        for result in (pool.imap_unordered(fn, jobs) if parallel else map(fn, jobs)):
            results.append(result)
            bar.update()
    return results


def render_markdown(result: Mapping, title: str = "Mini speech benchmark") -> str:
    """The table: one row per upstream, ``mean ± std`` per task, chance and retention."""
    tasks = result["tasks"]
    head = [f"{t.upper()} {info['metric'].upper()} {'↑' if info['higher_is_better'] else '↓'}" for t, info in tasks.items()]
    lines = [f"# {title}", "",
             f"Mini SUPERB on the mini corpus, mean ± std over {result['seeds']} downstream seeds (%). "
             "Retention: mean over tasks of (student - fbank) / (teacher - fbank); transfer: the same with the random "
             "teacher in place of fbank; error rates negated.", "",
             "| upstream | " + " | ".join(head) + " | retention | transfer |",
             "|---|" + "---:|" * (len(head) + 2),
             "| chance | " + " | ".join(f"{info['chance']:.1f}" for info in tasks.values()) + " | | |"]

    def ratio(key: str, row: str) -> str:
        found = result.get(key, {})
        return "" if row not in found else "undefined" if found[row] is None else f"{found[row]:.2f}"

    for row, cells in result["rows"].items():
        values = " | ".join(f"{cells[t]['mean']:.1f} ± {cells[t]['std']:.1f}" for t in tasks)
        lines.append(f"| {row} | {values} | {ratio('retention', row)} | {ratio('transfer', row)} |")
    lines += [""] + [f"Students by {key}: {_ranking(result.get(key, {}))}" for key in ("retention", "transfer")]
    lines += [f"- {note}" for note in result.get("notes", [])]
    lines += ["", "Checks (more than 2 seed standard deviations for the teacher; retention at least "
              f"{RETENTION_GOAL}):"] + [f"- {line}" for line in _check_lines(result["checks"])]
    return "\n".join(lines) + "\n"


def _ranking(ratios: Mapping[str, float | None]) -> str:
    """``a (0.90) > b (0.80)`` over the defined ratios, best first; ``undefined`` when none is."""
    defined = {s: r for s, r in ratios.items() if r is not None}
    return " > ".join(f"{s} ({defined[s]:.2f})" for s in sorted(defined, key=defined.get, reverse=True)) or "undefined"


def _check_lines(found: Mapping) -> list[str]:
    def tasks(cells: Mapping[str, bool]) -> str:
        failed = [t.upper() for t, ok in cells.items() if not ok]
        return "yes on every task" if not failed else f"no on {', '.join(failed)}"

    lines = [f"teacher above fbank: {tasks(found['teacher_beats_fbank_2std'])}",
             f"teacher above the random teacher: {tasks(found['teacher_beats_random_2std'])}"]
    lines += [f"{s} above fbank: {tasks(cells)}" for s, cells in found["student_beats_fbank"].items()]
    lines += [f"{s} retention reached: {'yes' if ok else 'no'}" for s, ok in found["retention_reached"].items()]
    return lines


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
