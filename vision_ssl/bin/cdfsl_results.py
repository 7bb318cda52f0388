"""Results table of the CD-FSL pretraining schemes (stage 3 of recipes/cdfsl.sh):

    python -m vision_ssl.bin.cdfsl_results --exp_root EXP --schemes sl msl_simclr ... \
        --targets eurosat isic ... --out EXP/<tag>/results.md

reads ``EXP/<scheme>/<target>/summary.json`` (written by ``vision_ssl.bin.fewshot_eval``) and
writes a Markdown table with one row per (scheme, target, update) and one column per shot count
(``mean ± ci95``, accuracies in %), plus the same rows as JSON beside it (``results.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def collect(exp_root: str | Path, schemes: list[str], targets: list[str]) -> list[dict]:
    """Rows ``{"scheme", "target", "update", "shots": {k: {"mean", "ci95", "episodes"}}}`` in
    scheme, target, update order."""
    rows = []
    for scheme in schemes:
        for target in targets:
            path = Path(exp_root) / scheme / target / "summary.json"
            if not path.is_file():
                raise FileNotFoundError(f"{path} not found; run the few-shot stage (2) of scheme {scheme} first")
            by_update: dict[str, dict] = {}
            for r in json.loads(path.read_text())["results"]:
                cell = {"mean": r["mean"], "ci95": r["ci95"], "episodes": r["episodes"]}
                by_update.setdefault(r["update"], {})[r["shots"]] = cell
            rows += [{"scheme": scheme, "target": target, "update": u, "shots": s} for u, s in by_update.items()]
    return rows


def to_markdown(rows: list[dict]) -> str:
    """The table of :func:`collect`'s rows (``–`` where a shot count was not evaluated)."""
    shots = sorted({k for row in rows for k in row["shots"]})
    lines = ["| scheme | target | update | " + " | ".join(f"{k}-shot" for k in shots) + " |",
             "|---|---|---|" + "---|" * len(shots)]
    for row in rows:
        cells = [f"{row['shots'][k]['mean']:.2f} ± {row['shots'][k]['ci95']:.2f}" if k in row["shots"] else "–"
                 for k in shots]
        lines.append(f"| {row['scheme']} | {row['target']} | {row['update']} | " + " | ".join(cells) + " |")
    episodes = sorted({c["episodes"] for row in rows for c in row["shots"].values()})
    return "\n".join(lines) + f"\n\nAccuracy (%) ± 95 % interval over {', '.join(map(str, episodes))} episodes.\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp_root", required=True, help="folder holding <scheme>/<target>/summary.json")
    parser.add_argument("--schemes", nargs="+", required=True, help="scheme folders, in table order")
    parser.add_argument("--targets", nargs="+", required=True, help="target datasets, in table order")
    parser.add_argument("--out", required=True, help="Markdown table (results.json is written beside it)")
    args = parser.parse_args(argv)
    try:
        rows = collect(args.exp_root, args.schemes, args.targets)
    except FileNotFoundError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        sys.exit(1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table = to_markdown(rows)
    out.write_text(table)
    out.with_suffix(".json").write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    print(table, end="")
    print(f"Written: {out}")


if __name__ == "__main__":
    main()
