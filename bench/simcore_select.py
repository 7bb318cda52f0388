"""Benchmark SimCore's streamed coreset selection against a plain full-matrix implementation.

Setup: random open-set features (``--sizes`` rows, ``--dim`` wide, standard normal, l2-normalised
by the selection) written as ``.npy`` shards of ``--chunk`` rows, as the feature-extraction stage
writes them; ``--k`` unit centroids from k-means on ``--target`` random target features (not
timed). Two workloads: ``stop`` (the reference setting: stopping rule with patience 20 and
threshold 0.95, budget 50 x |X|) and ``ratio`` (no stopping rule, budget ``--ratio`` x |U|, many
more rounds).

Implementations, each run in a fresh process (once timed, once under ``tracemalloc``):

``full_matrix`` (the reference)
    load every shard into one array, score it against the centroids (``[n, k]`` float32), sort
    every column (``[n, k]`` int64) and run the greedy rounds: :func:`greedy_select`.
``streamed``
    read the shards memory-mapped one at a time (:class:`FeatureShards`), keep a top-``m``
    candidate list per centroid and refill it by another pass only when a centroid runs out:
    :func:`greedy_select_streamed`.

Output, one JSON line per size and workload and measure (progress on stderr):

``select_time``
    ``ratio`` = wall time of ``streamed`` / ``full_matrix`` (reading the features included).
``select_peak_memory``
    ``ratio`` = peak traced heap bytes (``tracemalloc``: every numpy array and Python object;
    memory-mapped shard pages are file cache, not heap) of ``streamed`` / ``full_matrix``;
    ``rss_above_start`` / ``reference_rss_above_start`` give the peak resident set size above the
    size right before the selection (``ru_maxrss``; it counts touched mapped pages too).
Both lines carry ``identical`` (same selected indices in the same order), the coreset size, the
rounds and the refill passes.

Examples::

    OMP_NUM_THREADS=1 python bench/simcore_select.py --quick   # 10^4 and 10^5 rows (about a minute)
    python bench/simcore_select.py                              # 10^5 and 10^6 rows, dim 128, k 100

This is a benchmark, not a test: it asserts nothing about the numbers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vision_ssl.simcore import (  # noqa: E402
    coreset_budget,
    cosine_scores,
    greedy_select,
    greedy_select_streamed,
    kmeans_centroids,
)
from vision_ssl.simcore.features import FeatureShards  # noqa: E402

IMPLS = ("full_matrix", "streamed")


def make_data(folder: Path, n: int, args: argparse.Namespace) -> None:
    """Shards of random open-set features and the centroids of random target features."""
    rng = np.random.default_rng(0)
    shards = []
    for i, start in enumerate(range(0, n, args.chunk)):
        shards.append(f"shard_{i:05d}.npy")
        np.save(folder / shards[-1], rng.standard_normal((min(args.chunk, n - start), args.dim), dtype=np.float32))
    (folder / "features.json").write_text(json.dumps({"count": n, "dim": args.dim, "shards": shards}))
    target = rng.standard_normal((args.target, args.dim), dtype=np.float32)
    np.save(folder / "centroids.npy", kmeans_centroids(target, args.k, seed=0))


def worker(args: argparse.Namespace) -> None:
    """One implementation on one data folder; prints a JSON result line."""
    folder = Path(args.data)
    shards = FeatureShards(folder)
    centroids = np.load(folder / "centroids.npy")
    n = len(shards)
    stop = args.workload == "stop"
    budget = coreset_budget(args.target, n, stop, sampling_ratio=None if stop else args.ratio)
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if args.trace:
        tracemalloc.start()
    start = time.perf_counter()
    if args.impl == "full_matrix":
        features = shards.load()
        result = greedy_select(cosine_scores(features, centroids), budget, stop, rng=np.random.default_rng(0))
    else:  # one memory-mapped shard at a time, as the recipe's coreset stage reads them
        result = greedy_select_streamed(shards, centroids, budget, stop, rng=np.random.default_rng(0))
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] if args.trace else None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_start
    print(json.dumps({"seconds": seconds, "traced_peak": peak, "rss_above_start": rss, "size": len(result.indices),
                      "rounds": result.rounds, "refills": result.refills, "reason": result.reason,
                      "digest": hashlib.sha1(result.indices.tobytes()).hexdigest()}))


def run_worker(impl: str, folder: Path, workload: str, trace: bool, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", impl, "--data", str(folder), "--workload", workload,
           "--target", str(args.target), "--ratio", str(args.ratio)] + (["--trace"] if trace else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[100_000, 1_000_000], help="open-set sizes")
    parser.add_argument("--dim", type=int, default=128, help="feature width")
    parser.add_argument("--k", type=int, default=100, help="centroids")
    parser.add_argument("--target", type=int, default=2000, help="target-set size |X| (budget 50 |X| with stop)")
    parser.add_argument("--ratio", type=float, default=0.05, help="sampling ratio of the 'ratio' workload")
    parser.add_argument("--chunk", type=int, default=65536, help="rows per shard")
    parser.add_argument("--workloads", nargs="+", default=["stop", "ratio"], choices=["stop", "ratio"])
    parser.add_argument("--quick", action="store_true", help="smoke run: 10^4 and 10^5 rows")
    parser.add_argument("--worker", choices=IMPLS, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.impl = args.worker
        return worker(args)
    if args.quick:
        args.sizes = [10_000, 100_000]
    common = {"bench": "simcore_select", "reference": "full_matrix", "method": "streamed", "dim": args.dim,
              "k": args.k, "target": args.target, "chunk": args.chunk}
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"n={n}: writing random features", file=sys.stderr)
            make_data(Path(tmp), n, args)
            for workload in args.workloads:
                res = {}
                for impl in IMPLS:
                    print(f"n={n} {workload}: {impl}", file=sys.stderr)
                    res[impl] = (run_worker(impl, Path(tmp), workload, False, args),
                                 run_worker(impl, Path(tmp), workload, True, args))
                (t_ref, m_ref), (t_new, m_new) = res["full_matrix"], res["streamed"]
                facts = {**common, "n_open": n, "workload": workload, "identical": t_ref["digest"] == t_new["digest"],
                         "coreset_size": t_new["size"], "rounds": t_new["rounds"], "reason": t_new["reason"],
                         "refills": t_new["refills"]}
                print(json.dumps({**facts, "measure": "select_time",
                                  "ratio": round(t_new["seconds"] / t_ref["seconds"], 4),
                                  "seconds": round(t_new["seconds"], 3),
                                  "reference_seconds": round(t_ref["seconds"], 3)}), flush=True)
                print(json.dumps({**facts, "measure": "select_peak_memory",
                                  "ratio": round(m_new["traced_peak"] / m_ref["traced_peak"], 5),
                                  "bytes": m_new["traced_peak"], "reference_bytes": m_ref["traced_peak"],
                                  "rss_above_start": t_new["rss_above_start"],
                                  "reference_rss_above_start": t_ref["rss_above_start"],
                                  "how": "tracemalloc peak in a fresh process"}), flush=True)


if __name__ == "__main__":
    main()
