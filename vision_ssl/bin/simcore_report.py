"""Results table of a SimCore recipe:
``python -m vision_ssl.bin.simcore_report --expdir D --runs target_only simcore random [--target_labels 3 5 8]``.

For each run ``D/<run>`` (``target_only``: SSL on the target alone; a sampler name: SSL on
target + the coreset in ``D/coreset/<run>``) reports the linear-evaluation top-1 (best epoch,
mean over seeds, from ``vision_ssl.bin.results``), the coreset size and pretraining epochs, and,
with ``--target_labels``, the fraction of the coreset whose open-set label is a target class
next to that fraction in the whole open set (what uniform sampling gives on average). Writes
``D/results.md`` and ``D/results.json`` (or ``--out``) and prints the table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vision_ssl.io import write_json
from vision_ssl.bin.results import collect
from vision_ssl.data.filelist import read_filelist


def label_fraction(counts: dict[str, int], labels: set[int]) -> float:
    """Share of the counted items whose label is in ``labels`` (0 when nothing was counted)."""
    total = sum(counts.values())
    return sum(v for k, v in counts.items() if int(k) in labels) / total if total else 0.0


def report(expdir: str | Path, runs: list[str], target_labels: list[int] | None = None) -> dict:
    """One row per run: ``top1`` (mean, std, per seed) and, for coreset runs, coreset facts."""
    expdir = Path(expdir)
    labels = set(target_labels or [])
    rows, open_fraction = {}, None
    for run in runs:
        table = collect(expdir / run)["rows"]["linear top-1 (backbone)"]
        row = {"top1": table["mean"], "top1_std": table["std"], "top1_values": table["values"]}
        summary_file = expdir / "coreset" / run / "summary.json"
        if summary_file.is_file():
            s = json.loads(summary_file.read_text())
            row.update(coreset_size=s["size"], epochs=s["epochs"], rounds=s.get("rounds"),
                       stop_round=s.get("stop_round"))
            if labels:
                row["target_class_fraction"] = label_fraction(s["coreset_labels"], labels)
                if open_fraction is None:
                    _, open_labels = read_filelist(Path(s["settings"]["open_set"]) / "items.tsv")
                    open_fraction = sum(y in labels for y in open_labels) / len(open_labels)
        rows[run] = row
    return {"name": expdir.name, "target_labels": sorted(labels), "open_set_target_class_fraction": open_fraction,
            "rows": rows}


def to_markdown(table: dict) -> str:
    """Markdown of :func:`report`'s output."""
    lines = [f"# {table['name']}: linear evaluation on the target (top-1 %, best epoch)", "",
             "| pretraining data | top-1 | std | coreset size | epochs | target-class fraction of coreset |",
             "|---|---|---|---|---|---|"]
    for run, r in table["rows"].items():
        frac = r.get("target_class_fraction")
        lines.append(f"| {run} | {r['top1']:.2f} | {r['top1_std']:.2f} | {r.get('coreset_size', '-')} | "
                     f"{r.get('epochs', '-')} | {'-' if frac is None else f'{frac:.3f}'} |")
    if table["open_set_target_class_fraction"] is not None:
        lines += ["", f"Target classes {table['target_labels']} make up "
                  f"{table['open_set_target_class_fraction']:.3f} of the open set."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--expdir", required=True, help="recipe experiment folder")
    parser.add_argument("--runs", nargs="+", required=True, help="run folders below --expdir, in table order")
    parser.add_argument("--target_labels", nargs="*", type=int, default=None,
                        help="open-set labels that belong to the target classes (mini recipe: the digits)")
    parser.add_argument("--out", default=None, help="Markdown output (default: <expdir>/results.md)")
    args = parser.parse_args(argv)
    table = report(args.expdir, args.runs, args.target_labels)
    out = Path(args.out or Path(args.expdir) / "results.md")
    out.write_text(to_markdown(table))
    write_json(out.with_suffix(".json"), table)
    print(to_markdown(table), end="")
    print(f"Written: {out}")


if __name__ == "__main__":
    main()
