"""Score SUPERB runs and write a results table (Markdown), JSON and bar chart.

``python -m audio_compress.bin.superb_results --metrics a.json b.json DIR ... --out DIR
[--title T] [--published "HuBERT Base,STaRHuBERT"] [--mini | --full] [--strict]``

``--metrics`` takes the per-task metric files written by the SUPERB runner
(``{"upstream": ..., "task": ..., "metrics": {"KS_acc": 87.5, ...}}``) or folders, which are
searched for ``**/metrics.json``. Later files override earlier ones (with a warning). Writes
``OUT/results.{json,md,png}`` and prints the Markdown. ``--published ""`` leaves out the published
rows; ``--list-published`` prints the available names. See
:func:`audio_compress.superb.results.write_results`.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from audio_compress.superb.results import (DEFAULT_PUBLISHED, MetricsFileError, collect_metrics,
                                           write_results)
from audio_compress.superb.score import PUBLISHED, UnknownMetricError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--metrics", nargs="+", metavar="PATH",
                   help="metrics JSON files and/or folders (searched for **/metrics.json)")
    p.add_argument("--out", help="output folder for results.{json,md,png}")
    p.add_argument("--title", default="SUPERB results")
    p.add_argument("--published", default=",".join(DEFAULT_PUBLISHED),
                   help="comma-separated published rows to include ('' for none; "
                        f"default {','.join(DEFAULT_PUBLISHED)!r})")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--mini", dest="mini", action="store_const", const=True, default=None,
                      help="runs are on the mini SUPERB (synthetic corpus): say they are not "
                           "comparable to published rows")
    kind.add_argument("--full", dest="mini", action="store_const", const=False,
                      help="runs are on the full SUPERB data")
    p.add_argument("--strict", action="store_true",
                   help="no partial scores: incomplete upstreams get no Overall/SUPERB score")
    p.add_argument("--list-published", action="store_true",
                   help="print the names of the published rows and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_published:
        for name, row in PUBLISHED.items():
            print(f"{name}\t(params {row.params_m} M, source {row.source})")
        return 0
    if not args.metrics or not args.out:
        parser.error("--metrics and --out are required")
    published = [n.strip() for n in args.published.split(",") if n.strip()]
    unknown = [n for n in published if n not in PUBLISHED]
    if unknown:
        parser.error(f"unknown published row(s) {', '.join(map(repr, unknown))}; "
                     f"available: {', '.join(PUBLISHED)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = lambda msg, *a, **k: print(f"WARNING: {msg}", file=sys.stderr)
            metrics = collect_metrics(args.metrics)
        paths = write_results(metrics, args.out, title=args.title, published=published,
                              partial=not args.strict, mini=args.mini)
    except (FileNotFoundError, MetricsFileError, UnknownMetricError, ValueError) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    print(paths["md"].read_text(encoding="utf-8"))
    print(f"wrote {paths['md']}, {paths['json']} and {paths['png']} "
          f"({len(metrics)} upstream(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
