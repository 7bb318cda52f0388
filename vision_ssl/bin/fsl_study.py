"""The update-method study grid and its report.

    python -m vision_ssl.bin.fsl_study run --table conf/study.yaml --checkpoint CKPT \
        --dataset NAME --root ROOT --outdir D [--set defaults.epochs=10 ...]
    python -m vision_ssl.bin.fsl_study report --outdirs D1 D2 ... --out results.md [--plot results.png]

``run`` evaluates every (update row, shots) cell of the table on one target dataset, writing
``D/cells/<update>/<k>shot.json`` as each finishes (re-running skips finished cells) and then
``D/summary.json`` (the format of ``vision_ssl.bin.fewshot_eval``, cells in table order).
``--baselines random_init pixels`` adds the trivial baselines (:mod:`vision_ssl.eval.baselines`)
on the same episodes with the table's linear probe (:meth:`StudyConfig.probe_update`), cached in
``D/baselines/<kind>/<k>shot.json`` and listed under ``baselines`` (with ``chance``) in the summary.
``report`` reads the ``summary.json`` of each folder and writes a Markdown table (mean ± 95 %
interval per dataset, update and shots), the same numbers as JSON beside it, and a PNG of
accuracy vs shots per update method (one panel per dataset).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from compact_ssl.config import add_override_argument, save_yaml_config
from compact_ssl.io import write_json
from vision_ssl.bin.fewshot_eval import add_source_arguments, baseline_source, load_source, pick_device, run_cell
from vision_ssl.data import DatasetLayoutError, build_dataset
from vision_ssl.eval.baselines import BASELINES, chance_accuracy
from vision_ssl.fewshot.study import StudyConfig, load_study, plot_accuracy_vs_shots, to_markdown


def run_study(study: StudyConfig, args: argparse.Namespace) -> dict:
    """Run the missing cells of ``study`` into ``args.outdir``; returns the summary."""
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    save_yaml_config(study, outdir / "study.yaml")
    source = load_source(args.checkpoint, args.backbone, args.weights)
    data = build_dataset(args.dataset, args.root, study.split)
    print(f"{args.dataset} ({study.split}): {len(data)} images, {len(data.classes)} classes")
    device = pick_device(args.device)
    size = args.image_size or study.image_size or source.image_size

    def cell(path: Path, src, name: str, update, k: int, label: str) -> dict:
        if path.is_file():
            entry = json.loads(path.read_text())["results"][0]
            print(f"{path}: already finished; skipping")
        else:
            entry = run_cell(src, data, name, update, k, n_way=study.n_way, queries=study.queries,
                             episodes=study.episodes, seed=study.seed, image_size=size, device=device)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, {"dataset": args.dataset, "checkpoint": src.name, "results": [entry]})
        print(f"{args.dataset} {label} {study.n_way}-way {k}-shot: {entry['mean']:.2f} ± {entry['ci95']:.2f}")
        return entry

    results = [cell(outdir / "cells" / name / f"{k}shot.json", source, name, update, k, name)
               for name, update in study.update_table().items() for k in study.shots]
    baselines = []
    probe_name, probe = study.probe_update()
    for kind in args.baselines:
        base = baseline_source(source, kind, study.seed, size)
        baselines += [{**cell(outdir / "baselines" / kind / f"{k}shot.json", base, probe_name, probe, k,
                              f"{kind} baseline {probe_name}"), "baseline": kind} for k in study.shots]
    summary = {"dataset": args.dataset, "checkpoint": source.name, "split": study.split, "n_way": study.n_way,
               "queries": study.queries, "seed": study.seed, "results": results, "baselines": baselines,
               "chance": chance_accuracy(study.n_way)}
    write_json(outdir / "summary.json", summary)
    return summary


def report(outdirs: list[str], out: str, plot: str | None) -> str:
    """Write the Markdown table (+ JSON beside it) and the plot; returns the table."""
    summaries = []
    for folder in outdirs:
        path = Path(folder) / "summary.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; run 'fsl_study run --outdir {folder}' first")
        summaries.append(json.loads(path.read_text()))
    table = to_markdown(summaries)
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(table)
    write_json(out_path.with_suffix(".json"), {"studies": [{**s, **{key: [
        {k: v for k, v in r.items() if k != "per_episode"} for r in s.get(key, [])] for key in ("results", "baselines")}}
        for s in summaries]})
    if plot:
        plot_accuracy_vs_shots(summaries, plot)
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="evaluate every (update, shots) cell of a study table on one dataset")
    add_source_arguments(run)
    run.add_argument("--table", required=True, help="study YAML (vision_ssl.fewshot.study)")
    run.add_argument("--outdir", required=True, help="folder for the cells and summary.json")
    run.add_argument("--baselines", nargs="*", default=[], choices=BASELINES,
                     help="also evaluate these trivial baselines with the table's linear probe")
    add_override_argument(run, "defaults.epochs=10")
    rep = sub.add_parser("report", help="table and plot over finished studies")
    rep.add_argument("--outdirs", nargs="+", required=True, help="folders written by 'run'")
    rep.add_argument("--out", required=True, help="Markdown table (a .json twin is written beside it)")
    rep.add_argument("--plot", default=None, help="PNG of accuracy vs shots per update method")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            run_study(load_study(args.table, args.overrides), args)
        else:
            print(report(args.outdirs, args.out, args.plot), end="")
            print(f"Written: {args.out}" + (f", {args.plot}" if args.plot else ""))
    except (DatasetLayoutError, FileNotFoundError, ValueError) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
