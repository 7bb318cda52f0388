"""The mini speech benchmark: mini SUPERB in probe mode for every row and downstream seed, then the table.

``python -m audio_compress.bin.mini_benchmark --data DATA --upstream fbank teacher:ssl_teacher_local=T
star:star_local=S.pt ... --students star armhubert distilhubert --seeds 1 2 3 --out DIR [--nj 2]
[--set epochs=10]``

DATA holds the Kaldi data dirs ``train``, ``dev_mini`` and ``test_mini`` (``--splits`` renames them). Each
``--upstream`` is ``row:entry[=checkpoint]`` (the row name is the table's); every upstream runs once per
split through its s3prl entry and its hidden states are cached in ``DIR/features``; each (row, task, seed)
probe writes ``DIR/probes/<row>/<task>/seed<N>.json`` and is reused by a rerun. Writes
``DIR/results.{json,md,png}`` (contract in :mod:`audio_compress.superb.benchmark`) and prints the table.
Probe settings (``--set KEY=VALUE``): the fields of :class:`audio_compress.superb.probe.ProbeConfig`.
``--probes_only`` trains and keeps the probes of the given rows and writes no table (any rows: a recipe
runs the reference rows' probes while its teacher trains, and the full call later reuses them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from audio_compress.superb.benchmark import REFERENCE_ROWS, render_markdown, run_probes, summarise, write_benchmark
from audio_compress.superb.commands import parse_upstream
from audio_compress.superb.probe import ProbeConfig, chance_levels, check_data_dirs
from compact_ssl.config import ConfigError, add_override_argument, apply_overrides, build_dataclass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="folder of the Kaldi data dirs")
    p.add_argument("--splits", nargs=3, default=["train", "dev_mini", "test_mini"], metavar=("TRAIN", "DEV", "TEST"),
                   help="names of the train, dev and test data dirs under --data")
    p.add_argument("--upstream", nargs="+", required=True, help="row:entry[=checkpoint], in table order")
    p.add_argument("--students", nargs="*", default=[], help="the rows that are students (get a retention)")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3], help="downstream seeds")
    p.add_argument("--out", required=True, help="folder of features/, probes/ and results.{json,md,png}")
    p.add_argument("--nj", type=int, default=1, help="probes trained in parallel (one thread each)")
    p.add_argument("--title", default="Mini speech benchmark")
    p.add_argument("--probes_only", action="store_true",
                   help="only train (or find) the probes of these rows: no table, no reference rows needed")
    add_override_argument(p, example="epochs=10")
    args = p.parse_args(argv)
    try:
        config = build_dataclass(ProbeConfig, apply_overrides({}, args.overrides), where="probe settings (--set)")
        rows = {}
        for text in args.upstream:
            spec = parse_upstream(text)
            if spec.label in rows:
                raise ValueError(f"row {spec.label} is given twice")
            rows[spec.label] = spec
        missing = [r for r in (*REFERENCE_ROWS, *args.students) if r not in rows and not args.probes_only]
        if missing:
            raise ValueError(f"rows {missing} are needed (the reference rows {list(REFERENCE_ROWS)} and every "
                             "student); name them with --upstream row:entry[=checkpoint]")
        dirs = dict(zip(("train", "dev", "test"), (Path(args.data) / s for s in args.splits)))
        check_data_dirs(dirs)
        chance = chance_levels(dirs)
        values = run_probes(rows, dirs, args.seeds, args.out, config, nj=args.nj)
        if args.probes_only:
            print(f"Probes of {', '.join(rows)} ({len(args.seeds)} seeds) in {Path(args.out) / 'probes'}")
            return 0
        result = summarise(values, args.students, chance)
    except (FileNotFoundError, ConfigError, ValueError) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    paths = write_benchmark(result, args.out, args.title)
    print(render_markdown(result, args.title))
    print(f"Written: {', '.join(str(p) for p in paths.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
