"""Results tables: ``python -m vision_ssl.bin.results {linear,cdfsl} ...``.

* ``linear --expdir D [--out D/results.md]``: reads ``D/seed*/linear/result.json`` (and
  ``pretrain_done.json`` for the kNN monitor) and reports, per head, the mean and sample standard
  deviation (n - 1; 0 for a single seed) of the best linear-evaluation top-1 over epochs, plus the
  per-seed values.
* ``cdfsl --exp_root EXP --schemes sl msl_simclr ... --targets eurosat isic ... --out EXP/<tag>/results.md``
  (stage 3 of recipes/cdfsl.sh): reads ``EXP/<scheme>/<target>/summary.json`` (written by
  ``vision_ssl.bin.fewshot_eval``), one row per (scheme, target, update) and one column per shot
  count (``mean ± ci95``, accuracies in %).

Both write the Markdown table to ``--out`` and the same numbers as JSON beside it
(``results.json``), and print the table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from compact_ssl.io import atomic_write_text, read_json, write_json


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def collect(expdir: str | Path) -> dict:
    """``{"name", "seeds", "rows": {metric: {"mean", "std", "values"}}}`` over the finished seeds."""
    expdir = Path(expdir)
    seeds = sorted((p for p in expdir.glob("seed*") if (p / "linear" / "result.json").is_file()),
                   key=lambda p: int(p.name[4:]) if p.name[4:].isdigit() else p.name)
    if not seeds:
        raise FileNotFoundError(f"{expdir}: no seed*/linear/result.json; run the linear-evaluation stage first")
    per_metric: dict[str, list[float]] = {}
    for seed_dir in seeds:
        result = read_json(seed_dir / "linear" / "result.json")
        for head, value in result["best_top1"].items():
            per_metric.setdefault(f"linear top-1 ({head})", []).append(value)
        done = seed_dir / "pretrain_done.json"
        knn = read_json(done).get("knn_top1") if done.is_file() else None
        if knn is not None:
            per_metric.setdefault("kNN top-1 (backbone)", []).append(knn)
    rows = {}
    for metric, values in per_metric.items():
        mean, std = mean_std(values)
        rows[metric] = {"mean": mean, "std": std, "values": values}
    return {"name": expdir.name, "seeds": [p.name for p in seeds], "rows": rows}


def to_markdown(table: dict) -> str:
    """Markdown table of :func:`collect`'s output."""
    lines = [f"# {table['name']} ({len(table['seeds'])} seeds: {', '.join(table['seeds'])})", "",
             "| metric | mean | std | per seed |", "|---|---|---|---|"]
    for metric, row in table["rows"].items():
        per_seed = ", ".join(f"{v:.2f}" for v in row["values"])
        lines.append(f"| {metric} | {row['mean']:.2f} | {row['std']:.2f} | {per_seed} |")
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
            by_update: dict[str, dict] = {}
            for r in read_json(path)["results"]:
                cell = {"mean": r["mean"], "ci95": r["ci95"], "episodes": r["episodes"]}
                by_update.setdefault(r["update"], {})[r["shots"]] = cell
            rows += [{"scheme": scheme, "target": target, "update": u, "shots": s} for u, s in by_update.items()]
    return rows


def cdfsl_markdown(rows: list[dict]) -> str:
    """The table of :func:`collect_cdfsl`'s rows (``–`` where a shot count was not evaluated)."""
    shots = sorted({k for row in rows for k in row["shots"]})
    lines = ["| scheme | target | update | " + " | ".join(f"{k}-shot" for k in shots) + " |",
             "|---|---|---|" + "---|" * len(shots)]
    for row in rows:
        cells = [f"{row['shots'][k]['mean']:.2f} ± {row['shots'][k]['ci95']:.2f}" if k in row["shots"] else "–"
                 for k in shots]
        lines.append(f"| {row['scheme']} | {row['target']} | {row['update']} | " + " | ".join(cells) + " |")
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
            _write(Path(args.out), cdfsl_markdown(rows), {"rows": rows})
    except FileNotFoundError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
