"""Results table over seeds: ``python -m vision_ssl.bin.results --expdir D [--out D/results.md]``.

Reads ``D/seed*/linear/result.json`` (and ``pretrain_done.json`` for the kNN monitor) and reports,
per head, the mean and sample standard deviation (n - 1; 0 for a single seed) of the best
linear-evaluation top-1 over epochs, plus the per-seed values. Writes a Markdown table to
``--out`` and the same numbers to ``results.json`` beside it; prints the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


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
        result = json.loads((seed_dir / "linear" / "result.json").read_text())
        for head, value in result["best_top1"].items():
            per_metric.setdefault(f"linear top-1 ({head})", []).append(value)
        done = seed_dir / "pretrain_done.json"
        knn = json.loads(done.read_text()).get("knn_top1") if done.is_file() else None
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--expdir", required=True, help="experiment folder holding seed<N>/linear/result.json")
    parser.add_argument("--out", default=None, help="Markdown output (default: <expdir>/results.md)")
    args = parser.parse_args(argv)
    table = collect(args.expdir)
    out = Path(args.out or Path(args.expdir) / "results.md")
    out.write_text(to_markdown(table))
    out.with_suffix(".json").write_text(json.dumps(table, indent=2) + "\n")
    print(to_markdown(table), end="")
    print(f"Written: {out}")


if __name__ == "__main__":
    main()
