"""Results tables: ``python -m vision_ssl.bin.results {linear,cdfsl} ...``.

* ``linear --expdir D [--out D/results.md]``: reads ``D/seed*/linear/result.json`` (and
  ``pretrain_done.json`` for the kNN monitor) and reports, per head, the mean and sample standard
  deviation (n - 1; 0 for a single seed) of the best linear-evaluation top-1 over epochs, plus the
  per-seed values. Below the method rows: the chance level (``100 / num_classes``) and the
  trivial baselines of ``D/baselines/<kind>/`` (``linear_eval --baseline``: a random-init network
  of the same architecture and raw pixels, same probe, data and seeds), each labelled
  ``baseline: ...``; ``results.json`` holds them under ``chance`` and ``baselines``.
* ``cdfsl --exp_root EXP --schemes sl msl_simclr ... --targets eurosat isic ... --out EXP/<tag>/results.md``
  (stage 3 of recipes/cdfsl.sh): reads ``EXP/<scheme>/<target>/summary.json`` (written by
  ``vision_ssl.bin.fewshot_eval``), one row per (scheme, target, update) and one column per shot
  count (``mean ± ci95``, accuracies in %). Below them: the chance row (``100 / n_way``) and the
  baselines of ``EXP/baselines/<target>/summary.json`` (``fewshot_eval --baselines ... --baselines_only``,
  the same episodes and update), under ``chance`` and ``baselines`` in ``results.json``.

Both write the Markdown table to ``--out`` and the same numbers as JSON beside it
(``results.json``), and print the table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from compact_ssl.io import atomic_write_text, read_json, write_json
from vision_ssl.eval.baselines import BASELINE_LABELS, BASELINES, chance_accuracy


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _seed_dirs(expdir: Path) -> list[Path]:
    return sorted((p for p in expdir.glob("seed*") if (p / "linear" / "result.json").is_file()),
                  key=lambda p: int(p.name[4:]) if p.name[4:].isdigit() else p.name)


def _rows(seeds: list[Path]) -> tuple[dict, int | None]:
    """Metric rows over the seed folders and the class count their results name (None if absent).
    The kNN figure comes from pretraining (``pretrain_done.json``) or, for a baseline, its result."""
    per_metric: dict[str, list[float]] = {}
    num_classes = None
    for seed_dir in seeds:
        result = read_json(seed_dir / "linear" / "result.json")
        num_classes = result.get("num_classes", num_classes)
        for head, value in result["best_top1"].items():
            per_metric.setdefault(f"linear top-1 ({head})", []).append(value)
        done = seed_dir / "pretrain_done.json"
        knn = read_json(done).get("knn_top1") if done.is_file() else result.get("knn_top1")
        if knn is not None:
            per_metric.setdefault("kNN top-1 (backbone)", []).append(knn)
    rows = {}
    for metric, values in per_metric.items():
        mean, std = mean_std(values)
        rows[metric] = {"mean": mean, "std": std, "values": values}
    return rows, num_classes


def collect(expdir: str | Path) -> dict:
    """``{"name", "seeds", "rows": {metric: {"mean", "std", "values"}}, "baselines", "chance"}`` over
    the finished seeds: ``baselines`` maps each kind found in ``expdir/baselines/`` to its
    ``{"seeds", "rows"}``; ``chance`` is ``{"num_classes", "top1"}`` (None when no result names the
    class count)."""
    expdir = Path(expdir)
    seeds = _seed_dirs(expdir)
    if not seeds:
        raise FileNotFoundError(f"{expdir}: no seed*/linear/result.json; run the linear-evaluation stage first")
    rows, num_classes = _rows(seeds)
    baselines, chance = collect_baselines(expdir, num_classes)
    return {"name": expdir.name, "seeds": [p.name for p in seeds], "rows": rows, "baselines": baselines,
            "chance": chance}


def collect_baselines(expdir: str | Path, num_classes: int | None = None) -> tuple[dict, dict | None]:
    """``({kind: {"seeds", "rows"}}, chance)`` of the baselines probed in ``expdir/baselines/<kind>/``
    (``linear_eval --baseline``); ``chance`` is ``{"num_classes", "top1"}`` from ``num_classes`` or,
    when None, the class count of the baseline results (None if neither is known)."""
    baselines = {}
    for kind in BASELINES:
        base_seeds = _seed_dirs(Path(expdir) / "baselines" / kind)
        if base_seeds:
            base_rows, base_classes = _rows(base_seeds)
            num_classes = num_classes or base_classes
            baselines[kind] = {"seeds": [p.name for p in base_seeds], "rows": base_rows}
    return baselines, ({"num_classes": num_classes, "top1": chance_accuracy(num_classes)} if num_classes else None)


def baseline_label(kind: str) -> str:
    """Table label of a baseline kind."""
    return f"baseline: {BASELINE_LABELS[kind]}"


def chance_label(num_classes: int) -> str:
    """Table label of the chance row."""
    return f"chance (1/{num_classes})"


def to_markdown(table: dict) -> str:
    """Markdown table of :func:`collect`'s output."""
    lines = [f"# {table['name']} ({len(table['seeds'])} seeds: {', '.join(table['seeds'])})", "",
             "| metric | mean | std | per seed |", "|---|---|---|---|"]
    for metric, row in table["rows"].items():
        per_seed = ", ".join(f"{v:.2f}" for v in row["values"])
        lines.append(f"| {metric} | {row['mean']:.2f} | {row['std']:.2f} | {per_seed} |")
    for kind, base in table.get("baselines", {}).items():
        for metric, row in base["rows"].items():
            per_seed = ", ".join(f"{v:.2f}" for v in row["values"])
            lines.append(f"| {baseline_label(kind)}, {metric} | {row['mean']:.2f} | {row['std']:.2f} | {per_seed} |")
    if table.get("chance"):
        lines.append(f"| {chance_label(table['chance']['num_classes'])} | {table['chance']['top1']:.2f} | – | – |")
    return "\n".join(lines) + "\n"


def collect_cdfsl(exp_root: str | Path, schemes: list[str], targets: list[str]) -> list[dict]:
    """Rows ``{"scheme", "target", "update", "shots": {k: {"mean", "ci95", "episodes"}}}`` in
    scheme, target, update order."""
    rows = []
    for scheme in schemes:
        for target in targets:
            path = Path(exp_root) / scheme / target / "summary.json"
            if not path.is_file():
                raise FileNotFoundError(f"{path} not found; run the few-shot stage (2) of scheme {scheme} first")
            rows += _cdfsl_rows(scheme, target, read_json(path)["results"])
    return rows


def _cdfsl_rows(scheme: str, target: str, results: list[dict]) -> list[dict]:
    by_update: dict[str, dict] = {}
    for r in results:
        by_update.setdefault(r["update"], {})[r["shots"]] = {"mean": r["mean"], "ci95": r["ci95"], "episodes": r["episodes"]}
    return [{"scheme": scheme, "target": target, "update": u, "shots": s} for u, s in by_update.items()]


def collect_cdfsl_baselines(exp_root: str | Path, targets: list[str]) -> tuple[list[dict], dict | None]:
    """Rows of the baselines in ``EXP/baselines/<target>/summary.json`` (scheme ``baseline: ...``,
    targets without one are left out) and the chance level ``{"n_way", "accuracy"}`` (None when none was found)."""
    rows, n_way = [], None
    for target in targets:
        path = Path(exp_root) / "baselines" / target / "summary.json"
        if not path.is_file():
            continue
        summary = read_json(path)
        n_way = summary["n_way"]
        for kind in BASELINES:
            results = [r for r in summary.get("baselines", []) if r["baseline"] == kind]
            rows += _cdfsl_rows(baseline_label(kind), target, results)
    return rows, ({"n_way": n_way, "accuracy": chance_accuracy(n_way)} if n_way else None)


def cdfsl_markdown(rows: list[dict], chance: dict | None = None) -> str:
    """The table of :func:`collect_cdfsl`'s rows (then the baseline rows, if among them, and the
    chance row; ``–`` where a shot count was not evaluated)."""
    shots = sorted({k for row in rows for k in row["shots"]})
    lines = ["| scheme | target | update | " + " | ".join(f"{k}-shot" for k in shots) + " |",
             "|---|---|---|" + "---|" * len(shots)]
    for row in rows:
        cells = [f"{row['shots'][k]['mean']:.2f} ± {row['shots'][k]['ci95']:.2f}" if k in row["shots"] else "–"
                 for k in shots]
        lines.append(f"| {row['scheme']} | {row['target']} | {row['update']} | " + " | ".join(cells) + " |")
    if chance:
        lines.append(f"| chance (1/{chance['n_way']}) | all | – | " + " | ".join(f"{chance['accuracy']:.2f}" for _ in shots)
                     + " |")
    episodes = sorted({c["episodes"] for row in rows for c in row["shots"].values()})
    return "\n".join(lines) + f"\n\nAccuracy (%) ± 95 % interval over {', '.join(map(str, episodes))} episodes.\n"


def _write(out: Path, markdown: str, data: dict) -> None:
    atomic_write_text(out, markdown)
    write_json(out.with_suffix(".json"), data)
    print(markdown, end="")
    print(f"Written: {out}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="table", required=True)
    linear = sub.add_parser("linear", help="linear evaluation over seeds")
    linear.add_argument("--expdir", required=True, help="experiment folder holding seed<N>/linear/result.json")
    linear.add_argument("--out", default=None, help="Markdown output (default: <expdir>/results.md)")
    cdfsl = sub.add_parser("cdfsl", help="few-shot accuracy of the CD-FSL pretraining schemes")
    cdfsl.add_argument("--exp_root", required=True, help="folder holding <scheme>/<target>/summary.json")
    cdfsl.add_argument("--schemes", nargs="+", required=True, help="scheme folders, in table order")
    cdfsl.add_argument("--targets", nargs="+", required=True, help="target datasets, in table order")
    cdfsl.add_argument("--out", required=True, help="Markdown table (results.json is written beside it)")
    args = parser.parse_args(argv)
    try:
        if args.table == "linear":
            table = collect(args.expdir)
            _write(Path(args.out or Path(args.expdir) / "results.md"), to_markdown(table), table)
        else:
            rows = collect_cdfsl(args.exp_root, args.schemes, args.targets)
            baselines, chance = collect_cdfsl_baselines(args.exp_root, args.targets)
            _write(Path(args.out), cdfsl_markdown(rows + baselines, chance),
                   {"rows": rows, "baselines": baselines, "chance": chance})
    except FileNotFoundError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
