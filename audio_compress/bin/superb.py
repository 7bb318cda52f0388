"""SUPERB downstream evaluation through s3prl for any registered upstream.

Run (default sub-command): train + test tasks, write ``metrics.json`` per (upstream, task)::

    python -m audio_compress.bin.superb --upstream NAME [--ckpt PATH] --task ks --expdir DIR
        [--mode train|evaluate|both] [--device cpu|cuda] [--override key=value ...] [--lr X]
        [--paper_deviations true|false] [--mini true|false] [--data_root DIR]
        [--root VAR=PATH ...] [--s3prl_root tools/s3prl] [--nproc N] [--force true|false]

    # several upstreams x tasks into <out_root>/<upstream>/<task>/, two runs at a time
    python -m audio_compress.bin.superb --upstream star_local=exp/x/student.pt fbank \\
        --task pr ks sid ic --out_root exp/x/superb --mini true --data_root superb_data --nj 2

``--upstream``: an s3prl hub name (``fbank``, ``hubert``...) or one of ours (``star_local``,
``armhubert_local``, ``distilhubert_local``, ``ssl_teacher_local``), as ``name``,
``name=ckpt`` or ``tag:name=ckpt`` (the tag names the row of the results table), with the
model config s3prl passes as ``-g`` after an ``@``: ``name=ckpt@config.yaml`` (it must end in
``.yaml``/``.yml``; the config follows the last ``@``).

``--released``: checkpoints published by others (a paper's Lightning ``.ckpt`` with its YAML, an
s3prl DistilHuBERT ``.ckpt``), same syntax, evaluated beside (or instead of) ``--upstream``. Each
is loaded once through its entry before any task runs (a missing file, a missing YAML or a file
the safe reader refuses stops the command there); its row is labelled by the file name (or the
tag) and marked ``(released)`` in the results table, with its path and SHA-256::

    python -m audio_compress.bin.superb --upstream star_local=exp/x/student.pt \
        --released star_local=dl/STaRHuBERT.ckpt@dl/STaRHuBERT.yaml --task ks --out_root exp/x/superb

Files are read without running code from them; ``--trust true`` unpickles them fully (it can run
code: only for files from a trusted source that the safe reader refuses).

Load upstreams once, without any task (the recipes' preflight)::

    python -m audio_compress.bin.superb check --upstream armhubert_local=dl/ARMwavLM-S.ckpt@dl/ARMwavLM-S.yaml
``--root`` gives the dataset roots of full tasks by their ``recipes/db.sh`` names
(``SPEECH_COMMANDS=/data/sc``); unset ones are read from the environment.

Layouts for mini SUPERB (or FSDD) and the pinned s3prl checkout::

    python -m audio_compress.bin.superb layouts --source mini --train data/train \\
        --dev data/dev_mini --test data/test_mini --out superb_data [--tasks pr,ks,sid,ic]
    python -m audio_compress.bin.superb layouts --source fsdd --fsdd_root /path/to/free-spoken-digit-dataset \\
        --out superb_fsdd --tasks ks,sid
    python -m audio_compress.bin.superb tools --dest tools/s3prl [--fetch true|false]

Scores and the results table (Markdown, JSON, bar chart) of finished runs::

    python -m audio_compress.bin.superb results --metrics exp/x/superb --out exp/x/superb [--mini]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from audio_compress.superb.commands import UpstreamSpec
from audio_compress.superb.tasks import MINI_TASKS, S3PRL_COMMIT, SUPERB_TASKS, TASKS


def _bool(text: str) -> bool:
    low = str(text).lower()
    if low in ("true", "1", "yes"):
        return True
    if low in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _tasks(values: list[str]) -> list[str]:
    out = []
    for v in values:
        out += [t.strip().lower() for t in v.replace(",", " ").split() if t.strip()]
    if out == ["all"]:
        return list(SUPERB_TASKS)
    unknown = [t for t in out if t not in TASKS]
    if unknown:
        raise SystemExit(f"unknown task(s) {unknown}; known: {', '.join(TASKS)} (or 'all')")
    return out


def run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m audio_compress.bin.superb",
                                description="SUPERB tasks through s3prl's downstream runner.",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--upstream", nargs="+", default=[], help="[tag:]name[=ckpt[@config.yaml]]")
    p.add_argument("--released", nargs="+", default=[], metavar="SPEC",
                   help="released checkpoints (files published by others), [tag:]name=ckpt[@config.yaml]; "
                        "loaded once before any task, marked (released) in the results")
    p.add_argument("--ckpt", help="checkpoint of the (single) --upstream")
    p.add_argument("--task", nargs="+", required=True,
                   help=f"tasks ({', '.join(TASKS)}; 'all' = the 10 SUPERB tasks)")
    p.add_argument("--expdir", help="experiment folder of a single (upstream, task)")
    p.add_argument("--out_root", help="folder for several runs: <out_root>/<upstream>/<task>/")
    p.add_argument("--mode", choices=["train", "evaluate", "both"], default="both")
    p.add_argument("--device", default="cuda", help="cpu or cuda (default cuda)")
    p.add_argument("--override", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="s3prl config overrides, e.g. runner.total_steps=1000 "
                        "optimizer.lr=1e-3 (keys without config./args. are config keys)")
    p.add_argument("--lr", type=float, help="learning rate (replaces the config's)")
    p.add_argument("--paper_deviations", type=_bool, default=False,
                   help="ARMHuBERT/STaR deviations: linear warm-up scheduler on, SID lr x10")
    p.add_argument("--mini", type=_bool, default=False,
                   help=f"mini configs on the layouts in --data_root (tasks {', '.join(MINI_TASKS)})")
    p.add_argument("--data_root", default="superb_data",
                   help="mini layouts, or where derived metadata of full tasks goes")
    p.add_argument("--root", nargs="+", action="extend", default=[], metavar="VAR=PATH",
                   help="dataset roots of full tasks by db.sh name (default: environment)")
    p.add_argument("--s3prl_root", default="tools/s3prl",
                   help="pinned s3prl checkout for full tasks (tools sub-command)")
    p.add_argument("--nproc", type=int, default=1, help="DDP processes (GPUs) per training run")
    p.add_argument("--nj", type=int, default=1, help="(upstream, task) runs in parallel")
    p.add_argument("--threads", type=int, help="intra-op threads per run (CPU default: 1)")
    p.add_argument("--force", type=_bool, default=False, help="redo finished runs")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--layers", help="QbE: comma-separated layers (default: all)")
    p.add_argument("--trust", type=_bool, default=False,
                   help="unpickle checkpoint files fully, which can run code in them (only for trusted files)")
    return p


def _parse_upstreams(items: list[str], released: bool, option: str) -> list[UpstreamSpec]:
    from audio_compress.superb.commands import parse_upstream

    try:
        return [parse_upstream(item, released=released) for item in items]
    except ValueError as err:
        raise SystemExit(f"{option}: {err}") from None


def _preflight(ups: list[UpstreamSpec], option: str, device: str, trust: bool) -> list[str]:
    """Load each upstream once through its s3prl entry; returns the problems (empty: all load)."""
    from audio_compress.superb.pipeline import TaskFailed, check_upstream

    problems = []
    for up in ups:
        spec = f"{option} {up.as_spec()}"
        if up.ckpt and "://" not in up.ckpt and not Path(up.ckpt).exists() and (up.released or os.sep in up.ckpt):
            problems.append(f"{spec}: checkpoint {up.ckpt} does not exist")
        elif up.model_config and not Path(up.model_config).is_file():
            problems.append(f"{spec}: model config {up.model_config} does not exist")
        else:
            try:
                info = check_upstream(up, device, trust)
            except TaskFailed as err:
                problems.append(f"{spec}: {err}")
                continue
            print(f"{up.as_spec()}: loads through {up.name}: {info['num_layers']} hidden states of dims "
                  f"{sorted(set(info['dims']))}, downsample rate {info['downsample_rate']}")
    return problems


def _roots(items: list[str], tasks: list[str]) -> dict[str, str]:
    roots = {}
    for spec in tasks:
        for var in TASKS[spec].db_vars:
            if os.environ.get(var):
                roots[var] = os.environ[var]
    for item in items:
        var, eq, path = item.partition("=")
        if not eq:
            raise SystemExit(f"--root takes VAR=PATH, got {item!r}")
        roots[var.strip()] = path.strip()
    return roots


def main_run(argv: list[str]) -> int:
    from audio_compress.superb.pipeline import RunSpec, TaskFailed, run

    args = run_parser().parse_args(argv)
    tasks = _tasks(args.task)
    ups = _parse_upstreams(args.upstream, False, "--upstream")
    if args.ckpt:
        if len(ups) != 1:
            raise SystemExit("--ckpt needs exactly one --upstream (use name=ckpt for several)")
        ups = [dataclasses.replace(ups[0], ckpt=args.ckpt)]
    released = _parse_upstreams(args.released, True, "--released")
    ups += released
    if not ups:
        raise SystemExit("give --upstream and/or --released")
    labels = [u.label for u in ups]
    if len(set(labels)) != len(labels):
        raise SystemExit(f"upstream labels must be unique, got {labels}; use tag:name=ckpt")
    pairs = [(u, t) for u in ups for t in tasks]
    if args.expdir and len(pairs) > 1:
        raise SystemExit("--expdir is for one (upstream, task); use --out_root for several")
    if not args.expdir and not args.out_root:
        raise SystemExit("give --expdir (one run) or --out_root (several)")
    if args.mini:
        bad = [t for t in tasks if not TASKS[t].mini_config]
        if bad:
            raise SystemExit(f"no mini version of {bad}; mini tasks: {', '.join(MINI_TASKS)}")
    roots = _roots(args.root, tasks)
    s3prl_root = args.s3prl_root if Path(args.s3prl_root).is_dir() else None
    if not args.mini:
        problems = []
        for t in tasks:
            try:
                TASKS[t].data_overrides(roots, s3prl_root, args.data_root)
            except FileNotFoundError as err:
                problems.append(str(err))
            missing = TASKS[t].missing_python_deps()
            if missing:
                problems.append(f"task {t}: s3prl's {TASKS[t].downstream} expert imports modules "
                                f"that are not installed: pip install {' '.join(missing)}")
        if problems:
            print("ERROR: cannot run the full SUPERB tasks:\n  " + "\n  ".join(problems)
                  + "\nRestrict the tasks (--task / the recipe's --superb_tasks) to those whose "
                  "data you have.", file=sys.stderr)
            return 1
    problems = _preflight(released, "--released", "cpu", args.trust)
    if problems:
        print("ERROR: released checkpoint(s) that do not load (no task was run):\n  "
              + "\n  ".join(p.replace("\n", "\n    ") for p in problems), file=sys.stderr)
        return 1
    layers = [int(x) for x in args.layers.split(",")] if args.layers else None
    lock = threading.Lock()

    def work(pair):
        up, task = pair
        expdir = Path(args.expdir) if args.expdir else Path(args.out_root) / up.label / task
        prefix = f"[{up.label}/{task}] " if args.nj > 1 else ""

        def log(msg: str) -> None:
            with lock:
                print(prefix + msg, flush=True)

        start = time.time()
        try:
            doc = run(RunSpec(up, task, expdir, mode=args.mode, device=args.device,
                              overrides=args.override, lr=args.lr,
                              paper_deviations=args.paper_deviations, mini=args.mini,
                              data_root=args.data_root, roots=roots, s3prl_root=s3prl_root,
                              nproc=args.nproc, force=args.force, seed=args.seed, layers=layers,
                              threads=args.threads, trust=args.trust, log=log))
            return up.label, task, doc.get("metrics", {}), None, time.time() - start
        except (TaskFailed, FileNotFoundError, ValueError, KeyError) as err:
            log(f"ERROR {up.label}/{task}: {err}")
            return up.label, task, {}, str(err), time.time() - start

    with ThreadPoolExecutor(max_workers=max(1, args.nj)) as pool:
        results = list(pool.map(work, pairs))
    print("SUPERB runs:")
    failed = 0
    for label, task, metrics, err, secs in results:
        status = "FAILED: " + err.splitlines()[0] if err else \
            ", ".join(f"{k} = {v:.4g}" for k, v in metrics.items()) or "trained"
        print(f"  {label:24s} {task:4s} {secs:7.1f} s  {status}")
        failed += bool(err)
    return 1 if failed else 0


def main_check(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m audio_compress.bin.superb check",
                                description="Load upstreams once through their s3prl entries and run them on one "
                                            "second of noise (a preflight: nothing is trained).")
    p.add_argument("--upstream", nargs="+", required=True, help="[tag:]name[=ckpt[@config.yaml]]")
    p.add_argument("--device", default="cpu")
    p.add_argument("--trust", type=_bool, default=False,
                   help="unpickle checkpoint files fully, which can run code in them (only for trusted files)")
    args = p.parse_args(argv)
    problems = _preflight(_parse_upstreams(args.upstream, False, "--upstream"), "--upstream", args.device, args.trust)
    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    return 1 if problems else 0


def main_layouts(argv: list[str]) -> int:
    from audio_compress.superb.layouts import LayoutError, build_fsdd_layouts, build_mini_layouts

    p = argparse.ArgumentParser(prog="python -m audio_compress.bin.superb layouts",
                                description="Build the on-disk layouts s3prl's task datasets read.")
    p.add_argument("--source", choices=["mini", "fsdd"], default="mini")
    p.add_argument("--train", help="mini: Kaldi data dir of the training split")
    p.add_argument("--dev", help="mini: data dir of the dev split")
    p.add_argument("--test", help="mini: data dir of the test split")
    p.add_argument("--fsdd_root", help="fsdd: the folder holding recordings/")
    p.add_argument("--out", required=True)
    p.add_argument("--tasks", default=None, help="comma-separated (mini default pr,ks,sid,ic; fsdd ks,sid)")
    args = p.parse_args(argv)
    try:
        if args.source == "mini":
            if not (args.train and args.dev and args.test):
                p.error("--source mini needs --train, --dev and --test")
            tasks = (args.tasks or "pr,ks,sid,ic").split(",")
            done = build_mini_layouts({"train": args.train, "dev": args.dev, "test": args.test},
                                      args.out, tasks)
        else:
            if not args.fsdd_root:
                p.error("--source fsdd needs --fsdd_root")
            done = build_fsdd_layouts(args.fsdd_root, args.out, (args.tasks or "ks,sid").split(","))
    except (LayoutError, FileNotFoundError) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    for task, doc in done.items():
        print(f"{task}: {Path(args.out) / task}  {json.dumps(doc.get('counts', {}))}")
    return 0


def main_tools(argv: list[str]) -> int:
    from audio_compress.superb.tools import S3prlCheckoutError, ensure_s3prl_checkout, missing_tool_files

    p = argparse.ArgumentParser(prog="python -m audio_compress.bin.superb tools",
                                description="Provide the pinned s3prl checkout the full tasks need.")
    p.add_argument("--dest", default="tools/s3prl")
    p.add_argument("--commit", default=S3PRL_COMMIT)
    p.add_argument("--fetch", type=_bool, default=True, help="clone when absent (needs internet)")
    p.add_argument("--tasks", default=None, help="check the files of these tasks (default all)")
    args = p.parse_args(argv)
    tasks = _tasks([args.tasks]) if args.tasks else None
    if tasks is not None and not any(TASKS[t].tool_files or TASKS[t].needs_ctc_corpus for t in tasks):
        print(f"tasks {', '.join(tasks)} need no files from the s3prl checkout")
        return 0
    try:
        dest = ensure_s3prl_checkout(args.dest, args.commit, fetch=args.fetch)
    except S3prlCheckoutError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    missing = missing_tool_files(dest, tasks)
    if missing:
        print(f"ERROR: {dest} lacks {', '.join(missing)}", file=sys.stderr)
        return 1
    print(f"{dest}: all files the tasks need are present")
    return 0


_RESULTS_HELP = """Score SUPERB runs and write a results table (Markdown), JSON and bar chart.

``python -m audio_compress.bin.superb results --metrics a.json b.json DIR ... --out DIR
[--title T] [--published "HuBERT Base,STaRHuBERT" | --published_for wavlm] [--mini | --full] [--strict]``

``--metrics`` takes the per-task metric files written by the SUPERB runner
(``{"upstream": ..., "task": ..., "metrics": {"KS_acc": 87.5, ...}}``) or folders, which are
searched for ``**/metrics.json``. Later files override earlier ones (with a warning). Writes
``OUT/results.{json,md,png}`` and prints the Markdown. Rows of released checkpoints (runs of
``--released``) are marked "(released)", with their file and SHA-256 in the notes and in
``results.json`` (``released``), apart from our students (``ours``) and the published rows.
``--published ""`` leaves out the published rows; ``--published_for FAMILY`` picks those for a
teacher family (hubert, wavlm, wav2vec2; for wavlm: wavLM Base, ARMwavLM-S 960 h and 100 h,
STaRHuBERT, and a note that STaRWavLM has no published numbers); ``--list-published`` prints the
available names. See :func:`audio_compress.superb.results.write_results`.
"""


def _results_parser() -> argparse.ArgumentParser:
    from audio_compress.superb.published import ROWS_FOR_TEACHER
    from audio_compress.superb.results import DEFAULT_PUBLISHED

    p = argparse.ArgumentParser(prog="python -m audio_compress.bin.superb results",
                                description=_RESULTS_HELP.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=_RESULTS_HELP.split("\n\n", 1)[1])
    p.add_argument("--metrics", nargs="+", metavar="PATH",
                   help="metrics JSON files and/or folders (searched for **/metrics.json)")
    p.add_argument("--out", help="output folder for results.{json,md,png}")
    p.add_argument("--title", default="SUPERB results")
    rows = p.add_mutually_exclusive_group()
    rows.add_argument("--published", default=None,
                      help="comma-separated published rows to include ('' for none; "
                           f"default {','.join(DEFAULT_PUBLISHED)!r})")
    rows.add_argument("--published_for", choices=sorted(ROWS_FOR_TEACHER),
                      help="the published rows for runs distilled from this teacher family")
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


def main_results(argv: list[str]) -> int:
    from audio_compress.superb.published import ROWS_FOR_TEACHER, UNPUBLISHED
    from audio_compress.superb.results import (
        DEFAULT_PUBLISHED,
        MetricsFileError,
        collect_metrics,
        collect_released,
        write_results,
    )
    from audio_compress.superb.score import PUBLISHED, UnknownMetricError

    parser = _results_parser()
    args = parser.parse_args(argv)
    if args.list_published:
        for name, row in PUBLISHED.items():
            print(f"{name}\t(params {row.params_m} M, source {row.source})")
        for name, why in UNPUBLISHED.items():
            print(f"{name}\t(no published numbers: {why})")
        return 0
    if not args.metrics or not args.out:
        parser.error("--metrics and --out are required")
    if args.published_for:
        published = list(ROWS_FOR_TEACHER[args.published_for])
    elif args.published is not None:
        published = [n.strip() for n in args.published.split(",") if n.strip()]
    else:
        published = list(DEFAULT_PUBLISHED)
    unknown = [n for n in published if n not in PUBLISHED and n not in UNPUBLISHED]
    if unknown:
        parser.error(f"unknown published row(s) {', '.join(map(repr, unknown))}; "
                     f"available: {', '.join(PUBLISHED)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = lambda msg, *a, **k: print(f"WARNING: {msg}", file=sys.stderr)
            metrics = collect_metrics(args.metrics)
        released = collect_released(args.metrics)
        paths = write_results(metrics, args.out, title=args.title, published=published,
                              partial=not args.strict, mini=args.mini, released=released)
    except (FileNotFoundError, MetricsFileError, UnknownMetricError, ValueError) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    print(paths["md"].read_text(encoding="utf-8"))
    print(f"wrote {paths['md']}, {paths['json']} and {paths['png']} "
          f"({len(metrics)} upstream(s), {len(released)} of them released checkpoints)")
    return 0



def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "layouts":
        return main_layouts(argv[1:])
    if argv and argv[0] == "results":
        return main_results(argv[1:])
    if argv and argv[0] == "tools":
        return main_tools(argv[1:])
    if argv and argv[0] == "check":
        return main_check(argv[1:])
    if argv and argv[0] == "run":
        argv = argv[1:]
    return main_run(argv)


if __name__ == "__main__":
    sys.exit(main())
