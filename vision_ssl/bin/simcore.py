"""SimCore, one sub-command per recipe step (``recipes/simcore.sh``; the SSL pretraining and linear
evaluation runs are ``vision_ssl.bin.pretrain`` and ``vision_ssl.bin.linear_eval``)::

    python -m vision_ssl.bin.simcore prepare --out data --target_classes 3 5 8 [--per_class 40]
        [--omniglot DIR] [--size 16] [--seed 0]
    python -m vision_ssl.bin.simcore features --checkpoint C --dataset D --root R --split S --out F
        [--eval_aug NAME] [--shard_size N] [--batch_size N] [--num_workers N] [--device auto]
    python -m vision_ssl.bin.simcore select --config conf/coreset.yaml --target F_X --open_set F_U --out D
        [--match D_SIMCORE] [--set KEY=VALUE ...]
    python -m vision_ssl.bin.simcore report --expdir D --runs target_only simcore random
        [--target_labels 3 5 8] [--out results.md]

``prepare`` builds the mini recipe's digits target and open set; ``features`` embeds a dataset
with a pretrained encoder into feature shards; ``select`` draws a coreset (SimCore or random)
from the feature folders; ``report`` writes the results table.
``python -m vision_ssl.bin.simcore COMMAND --help`` describes each.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from compact_ssl.cli import command_parser, dispatch
from compact_ssl.config import add_override_argument
from compact_ssl.io import atomic_write_text, read_json, write_json

PROG = "python -m vision_ssl.bin.simcore"


def _parser(command: str, doc: str | None) -> argparse.ArgumentParser:
    return command_parser(PROG, command, doc)


def main_prepare(argv: list[str]) -> int:
    """``prepare``: export scikit-learn's digits to ``<out>/digits`` (ImageFolder), then write the
    target set ``<out>/target/{train,test}/<digit>/`` and the open-set list ``<out>/openset.tsv``
    (:func:`vision_ssl.simcore.mini.make_mini_sets`); ``--omniglot`` adds the Omniglot background
    images of that folder's ``images_background_small{1,2}.zip`` to the open set."""
    from vision_ssl.data import export_digits
    from vision_ssl.simcore.mini import make_mini_sets

    parser = _parser("prepare", main_prepare.__doc__)
    parser.add_argument("--out", required=True, help="data folder of the recipe")
    parser.add_argument("--target_classes", nargs="+", type=int, required=True, help="digit classes of the target")
    parser.add_argument("--per_class", type=int, default=40, help="target train images per class")
    parser.add_argument("--omniglot", default="", help="folder with the Omniglot zips (empty: digits only)")
    parser.add_argument("--size", type=int, default=16, help="side of the exported digit images")
    parser.add_argument("--seed", type=int, default=0, help="seed of the digits split and of the target draw")
    args = parser.parse_args(argv)
    digits = Path(args.out) / "digits"
    export_digits(digits, size=args.size, seed=args.seed)
    meta = make_mini_sets(digits, args.out, args.target_classes, args.per_class, args.omniglot or None, args.seed)
    print(f"target: {meta['target_train']} train images of digits {args.target_classes}; open set: "
          f"{meta['open_set']} images ({meta['open_set_target_class']} of the target classes, "
          f"{meta['open_set_omniglot']} Omniglot) -> {Path(args.out) / 'openset.tsv'}")
    return 0


def main_features(argv: list[str]) -> int:
    """``features``: the backbone of a ``vision_ssl.bin.pretrain`` checkpoint and its config's
    evaluation transform (``data.eval_aug`` at ``data.image_size``: Resize 256 + CenterCrop 224 in
    the full recipes) and normalisation embed a dataset into l2-normalised float32 shards of
    ``--shard_size`` rows, ``items.tsv`` and ``features.json`` (:mod:`vision_ssl.simcore.features`),
    with a progress bar; an interrupted run resumes after its last complete shard, a finished one
    is skipped."""
    import torch

    from vision_ssl.augment import AUGMENTATIONS, build_transform
    from vision_ssl.data import DATASETS, build_dataset
    from vision_ssl.methods import load_pretrained
    from vision_ssl.simcore.features import extract_to_shards

    parser = _parser("features", main_features.__doc__)
    parser.add_argument("--checkpoint", required=True, help="pretraining checkpoint (seed*/checkpoints/last.ckpt)")
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS), help="registered dataset name")
    parser.add_argument("--root", required=True, help="dataset root")
    parser.add_argument("--split", required=True, help="split (for filelist: the list file name)")
    parser.add_argument("--out", required=True, help="feature folder to write")
    parser.add_argument("--eval_aug", default=None, choices=AUGMENTATIONS,
                        help="transform (default: the checkpoint config's data.eval_aug)")
    parser.add_argument("--shard_size", type=int, default=65536, help="rows per .npy shard (the selection's chunk)")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--num_workers", type=int, default=4)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    args = parser.parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    encoder = load_pretrained(args.checkpoint)
    data = encoder.config.data
    eval_aug = args.eval_aug or data.eval_aug
    transform = build_transform(eval_aug, data.image_size, *data.norm)
    dataset = build_dataset(args.dataset, args.root, args.split, transform)
    params = {"checkpoint": args.checkpoint, "dataset": args.dataset, "root": args.root, "split": args.split,
              "eval_aug": eval_aug, "image_size": data.image_size}
    meta = extract_to_shards(encoder, dataset, args.out, params, args.shard_size, args.batch_size, args.num_workers,
                             device)
    print(f"{args.dataset} {args.split}: {meta['count']} images -> {meta['dim']}-d features in "
          f"{len(meta['shards'])} shard(s) at {args.out}")
    return 0


def main_select(argv: list[str]) -> int:
    """``select``: draw a coreset from the open set (:func:`vision_ssl.simcore.coreset.write_coreset`)."""
    from vision_ssl.simcore import coreset
    from vision_ssl.simcore.config import load_coreset_config

    parser = _parser("select", coreset.__doc__)
    parser.add_argument("--config", default=None, help="coreset YAML (egs/*/simcore/conf/coreset.yaml)")
    parser.add_argument("--target", required=True, help="feature folder of the target set X")
    parser.add_argument("--open_set", required=True, help="feature folder of the open set U")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--match", default=None,
                        help="random baseline: draw as many images as the coreset folder given here")
    add_override_argument(parser, "method=random")
    args = parser.parse_args(argv)
    config = load_coreset_config(args.config, args.overrides)
    s = coreset.write_coreset(config, args.target, args.open_set, args.out, args.match)
    print(f"{config.method} coreset: {s['size']} of {s['open_set_size']} open-set images "
          f"(budget {s['budget']}, {s.get('rounds', '-')} rounds, stop round {s.get('stop_round')}); "
          f"pretraining epochs {s['epochs']} -> {Path(args.out) / 'train.tsv'}")
    return 0


def label_fraction(counts: dict[str, int], labels: set[int]) -> float:
    """Share of the counted items whose label is in ``labels`` (0 when nothing was counted)."""
    total = sum(counts.values())
    return sum(v for k, v in counts.items() if int(k) in labels) / total if total else 0.0


def report(expdir: str | Path, runs: list[str], target_labels: list[int] | None = None) -> dict:
    """One row per run of ``expdir``: linear-evaluation ``top1`` (mean, std, per seed; from
    ``vision_ssl.bin.results``) and, for coreset runs, the coreset size, pretraining epochs and,
    with ``target_labels``, the fraction of the coreset whose open-set label is a target class
    (next to that fraction in the whole open set, what uniform sampling gives on average).
    ``baselines`` holds the same probe's ``top1`` of the trivial baselines in ``expdir/baselines/``
    (``linear_eval --baseline``), ``chance`` the uniform guess (``{"num_classes", "top1"}``)."""
    from vision_ssl.bin.results import collect, collect_baselines
    from vision_ssl.data.filelist import read_filelist

    expdir = Path(expdir)
    labels = set(target_labels or [])
    rows, open_fraction, num_classes = {}, None, None
    for run in runs:
        collected = collect(expdir / run)
        num_classes = num_classes or (collected["chance"] or {}).get("num_classes")
        table = collected["rows"]["linear top-1 (backbone)"]
        row = {"top1": table["mean"], "top1_std": table["std"], "top1_values": table["values"]}
        summary_file = expdir / "coreset" / run / "summary.json"
        if summary_file.is_file():
            s = read_json(summary_file)
            row.update(coreset_size=s["size"], epochs=s["epochs"], rounds=s.get("rounds"),
                       stop_round=s.get("stop_round"))
            if labels:
                row["target_class_fraction"] = label_fraction(s["coreset_labels"], labels)
                if open_fraction is None:
                    _, open_labels = read_filelist(Path(s["settings"]["open_set"]) / "items.tsv")
                    open_fraction = sum(y in labels for y in open_labels) / len(open_labels)
        rows[run] = row
    found, chance = collect_baselines(expdir, num_classes)
    baselines = {}
    for kind, base in found.items():
        probe = base["rows"]["linear top-1 (backbone)"]
        baselines[kind] = {"top1": probe["mean"], "top1_std": probe["std"], "top1_values": probe["values"]}
    return {"name": expdir.name, "target_labels": sorted(labels), "open_set_target_class_fraction": open_fraction,
            "rows": rows, "baselines": baselines, "chance": chance}


def to_markdown(table: dict) -> str:
    """Markdown of :func:`report`'s output (the baseline and chance rows below the runs)."""
    from vision_ssl.bin.results import baseline_label, chance_label

    lines = [f"# {table['name']}: linear evaluation on the target (top-1 %, best epoch)", "",
             "| pretraining data | top-1 | std | coreset size | epochs | target-class fraction of coreset |",
             "|---|---|---|---|---|---|"]
    for run, r in table["rows"].items():
        frac = r.get("target_class_fraction")
        lines.append(f"| {run} | {r['top1']:.2f} | {r['top1_std']:.2f} | {r.get('coreset_size', '-')} | "
                     f"{r.get('epochs', '-')} | {'-' if frac is None else f'{frac:.3f}'} |")
    for kind, r in table.get("baselines", {}).items():
        lines.append(f"| {baseline_label(kind)} (no pretraining) | {r['top1']:.2f} | {r['top1_std']:.2f} | - | - | - |")
    if table.get("chance"):
        lines.append(f"| {chance_label(table['chance']['num_classes'])} | {table['chance']['top1']:.2f} | - | - | - | - |")
    if table["open_set_target_class_fraction"] is not None:
        lines += ["", f"Target classes {table['target_labels']} make up "
                  f"{table['open_set_target_class_fraction']:.3f} of the open set."]
    return "\n".join(lines) + "\n"


def main_report(argv: list[str]) -> int:
    """``report``: for each run ``D/<run>`` (``target_only``: SSL on the target alone; a sampler
    name: SSL on target + the coreset in ``D/coreset/<run>``) the row of :func:`report`; writes
    ``D/results.md`` and ``D/results.json`` (or ``--out``) and prints the table."""
    parser = _parser("report", main_report.__doc__)
    parser.add_argument("--expdir", required=True, help="recipe experiment folder")
    parser.add_argument("--runs", nargs="+", required=True, help="run folders below --expdir, in table order")
    parser.add_argument("--target_labels", nargs="*", type=int, default=None,
                        help="open-set labels that belong to the target classes (mini recipe: the digits)")
    parser.add_argument("--out", default=None, help="Markdown output (default: <expdir>/results.md)")
    args = parser.parse_args(argv)
    table = report(args.expdir, args.runs, args.target_labels)
    out = Path(args.out or Path(args.expdir) / "results.md")
    atomic_write_text(out, to_markdown(table))
    write_json(out.with_suffix(".json"), table)
    print(to_markdown(table), end="")
    print(f"Written: {out}")
    return 0


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "prepare": main_prepare, "features": main_features, "select": main_select, "report": main_report}


def main(argv: list[str] | None = None) -> int:
    """Run the sub-command named by the first argument; returns the exit status."""
    return dispatch(PROG, __doc__, COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
