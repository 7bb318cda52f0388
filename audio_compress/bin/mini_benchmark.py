"""The mini speech benchmark table from mini SUPERB runs over several downstream seeds.

``python -m audio_compress.bin.mini_benchmark --metrics SEED_ROOT [SEED_ROOT ...] --layouts SUPERB_DATA
--rows fbank teacher_random teacher star armhubert distilhubert --students star armhubert distilhubert --out DIR``

Each SEED_ROOT is the ``--out_root`` of one ``audio_compress.bin.superb`` run whose upstream tags are the
row names. Writes ``DIR/results.{json,md,png}`` (contract in :mod:`audio_compress.superb.benchmark`) and
prints the table.
"""

from __future__ import annotations

import argparse
import sys

from audio_compress.superb.benchmark import build_benchmark, chance_levels, render_markdown, write_benchmark
from audio_compress.superb.results import MetricsFileError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--metrics", nargs="+", required=True, help="one SUPERB out_root per downstream seed")
    p.add_argument("--layouts", required=True, help="the mini SUPERB layouts (chance levels)")
    p.add_argument("--rows", nargs="+", required=True, help="rows = upstream tags, in table order")
    p.add_argument("--students", nargs="+", required=True, help="the rows that are students")
    p.add_argument("--out", required=True, help="folder for results.{json,md,png}")
    p.add_argument("--title", default="Mini speech benchmark")
    args = p.parse_args(argv)
    try:
        result = build_benchmark(args.metrics, {row: row for row in args.rows}, args.students,
                                 chance_levels(args.layouts))
    except (FileNotFoundError, MetricsFileError, ValueError, KeyError) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    paths = write_benchmark(result, args.out, args.title)
    print(render_markdown(result, args.title))
    print(f"Written: {', '.join(str(p) for p in paths.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
