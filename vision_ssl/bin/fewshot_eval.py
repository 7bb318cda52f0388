"""Episodic few-shot evaluation of a pretrained backbone on a target dataset:

    python -m vision_ssl.bin.fewshot_eval --checkpoint CKPT --dataset NAME --root ROOT \
        [--split labeled] [--n_way 5] [--shots 1 5] [--queries 15] [--episodes 600] [--seed 0] \
        [--update lp|ft|NAME ...] [--table study.yaml] [--set key=value ...] --out result.json

``CKPT`` is a checkpoint of ``vision_ssl.bin.pretrain`` (its backbone, normalisation and image
size are used); ``--backbone NAME --weights FILE`` takes a plain backbone state dict instead
(ImageNet normalisation, 224 unless ``--image_size``). Update names come from ``--table`` (a
study table, see ``vision_ssl.fewshot.study``) or the presets lp, ft, ft_last, ft_bn, refine;
``--set`` overrides their fields (e.g. ``--set epochs=10``). Writes ``{"dataset", "checkpoint",
"results": [{"shots", "update", "mean", "ci95", "episodes", "per_episode"}, ...]}`` (accuracies
in %, ``ci95`` the half-width 1.96 s / sqrt(episodes)).

Fixed episodes instead of sampled ones (no ``--dataset``, ``--root`` or sampling options):

    python -m vision_ssl.bin.fewshot_eval --checkpoint CKPT --episodes_file FILE [--pixel_nn] --out result.json
    python -m vision_ssl.bin.fewshot_eval --checkpoint CKPT --omniglot_runs DIR [--pixel_nn] --out result.json

``FILE`` is an episode list (tab-separated ``episode role path label``, see
``vision_ssl.fewshot.fixed_episodes``); ``DIR`` holds Omniglot's official one-shot runs
(``runXX/``, see ``vision_ssl.fewshot.omniglot``). Each update is run on every episode, and
``--pixel_nn`` adds the raw-pixel nearest-neighbour baseline (update ``pixel_nn`` under
``baselines``; images resized to the evaluation size). The JSON has the same ``results`` entries (``shots``: support
images per class, 0 when the episodes differ) plus ``episode_ids`` per entry.

Trivial baselines (both modes): ``--baselines random_init pixels`` also evaluates, on the same
episodes with the update ``--baseline_update`` (default ``lp``, the linear probe), a freshly
initialised backbone of the checkpoint's architecture (seeded by ``--seed``) and the standardised
raw pixels (:mod:`vision_ssl.eval.baselines`); ``--baselines_only`` skips the checkpoint's own
updates (it then gives only the architecture and the input convention). Their entries (with
``baseline``: the kind) go under ``baselines`` in the JSON, next to ``chance`` (``100 / n_way``);
the ``pixel_nn`` row of fixed episodes is listed there too (``baseline``: ``pixel_nn``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from compact_ssl.config import add_override_argument, apply_overrides
from compact_ssl.io import write_json
from vision_ssl.augment import IMAGENET_MEAN, IMAGENET_STD
from vision_ssl.backbones import BACKBONES, build_backbone
from vision_ssl.data import DATASETS, DatasetLayoutError, build_dataset
from vision_ssl.data.base import LabeledImages
from vision_ssl.eval.baselines import BASELINES, PixelEncoder, chance_accuracy, check_kinds
from vision_ssl.fewshot import UPDATE_PRESETS, UpdateConfig, evaluate_fewshot, update_config
from vision_ssl.fewshot.fixed_episodes import (
    FixedEpisode,
    common_shape,
    evaluate_fixed_episodes,
    evaluate_pixel_nn,
    read_episodes_file,
)
from vision_ssl.fewshot.omniglot import read_omniglot_runs
from vision_ssl.fewshot.study import load_study

#: options that draw episodes from a dataset; fixed episodes (--episodes_file / --omniglot_runs) refuse them
SAMPLING_OPTIONS = ("dataset", "root", "split", "n_way", "shots", "queries", "episodes")


@dataclass
class Source:
    """A pretrained backbone and the input convention it was trained with."""

    backbone: nn.Module
    mean: Sequence[float]
    std: Sequence[float]
    image_size: int
    name: str  #: checkpoint or weights path, for the result file
    #: a freshly initialised backbone of the same architecture (the random-init baseline)
    fresh: Callable[[], nn.Module] | None = field(default=None, repr=False)


def baseline_source(source: Source, kind: str, seed: int, image_size: int) -> Source:
    """The trivial baseline ``kind`` in place of ``source``'s backbone, with its input convention:
    ``random_init`` (``source.fresh()`` under ``torch.manual_seed(seed)``) or ``pixels``."""
    check_kinds([kind])
    if kind == "pixels":
        backbone = PixelEncoder(image_size)
    else:
        if source.fresh is None:
            raise ValueError(f"{source.name}: no architecture known to build a random-init baseline from")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            backbone = source.fresh()
    return dataclasses.replace(source, backbone=backbone.eval(), name=f"{kind} baseline ({source.name})")


def load_source(checkpoint: str | None = None, backbone: str | None = None, weights: str | None = None) -> Source:
    """The backbone of a pretraining checkpoint, or ``backbone`` loaded with a plain state dict."""
    if checkpoint:
        from vision_ssl.methods import load_pretrained, method_class

        method = load_pretrained(checkpoint)
        config = dataclasses.replace(method.config, cdfsl=dataclasses.replace(method.config.cdfsl, init_from=""))
        mean, std = config.data.norm
        return Source(method.backbone, mean, std, config.data.image_size, str(checkpoint),
                      fresh=lambda: method_class(config)(config).backbone)
    if not (backbone and weights):
        raise ValueError("give --checkpoint, or --backbone with --weights")
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: backbone weights not found")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    if state and all(k.startswith("backbone.") for k in state):
        state = {k[len("backbone."):]: v for k, v in state.items()}
    model = build_backbone(backbone)
    missing, unexpected = model.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")},
                                                strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: not a {backbone} state dict (missing {missing[:4]}, unexpected {unexpected[:4]}); "
                         "pass the matching --backbone")
    return Source(model, IMAGENET_MEAN, IMAGENET_STD, 224, str(path), fresh=lambda: build_backbone(backbone))


def resolve_updates(names: Sequence[str], table: dict[str, UpdateConfig] | None,
                    overrides: Sequence[str] = ()) -> dict[str, UpdateConfig]:
    """Update configs by name, from a study table or :data:`UPDATE_PRESETS`, with overrides."""
    out = {}
    for name in names:
        if table is not None:
            if name not in table:
                raise ValueError(f"update {name!r} is not in the table; choose one of {list(table)}")
            base = dataclasses.asdict(table[name])
        elif name in UPDATE_PRESETS:
            base = dict(UPDATE_PRESETS[name])
        else:
            raise ValueError(f"unknown update {name!r}; choose one of {list(UPDATE_PRESETS)} or pass --table")
        out[name] = update_config(apply_overrides(base, list(overrides)), f"update {name}")
    return out


def pick_device(device: str) -> str:
    """``auto`` -> cuda when available, else cpu."""
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def load_initial_state(update: UpdateConfig) -> dict[str, Tensor] | None:
    """ReFine reinit-mode weights of ``update`` (None for fresh random)."""
    if not (update.refine and update.refine_init):
        return None
    path = Path(update.refine_init)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: refine_init state dict not found")
    return torch.load(path, map_location="cpu", weights_only=True)


def run_cell(source: Source, data: LabeledImages, name: str, update: UpdateConfig, shots: int, *, n_way: int,
             queries: int, episodes: int, seed: int, image_size: int, device: str) -> dict:
    """One (update, shots) result entry."""
    return evaluate_fewshot(source.backbone, data, update, name=name, n_way=n_way, shots=shots, queries=queries,
                            episodes=episodes, seed=seed, image_size=image_size, mean=source.mean, std=source.std,
                            device=device, initial_state=load_initial_state(update)).to_dict()


def add_source_arguments(parser: argparse.ArgumentParser, data_required: bool = True) -> None:
    """Options naming the pretrained backbone, the target data and the device (shared with fsl_study;
    ``data_required=False``: the caller checks ``--dataset`` / ``--root`` itself)."""
    parser.add_argument("--checkpoint", help="Lightning checkpoint from vision_ssl.bin.pretrain")
    parser.add_argument("--backbone", choices=BACKBONES, help="backbone of a plain state dict (with --weights)")
    parser.add_argument("--weights", help="plain backbone state dict (.pt)")
    parser.add_argument("--dataset", required=data_required, choices=sorted(DATASETS), help="target dataset")
    parser.add_argument("--root", required=data_required, help="target dataset root")
    parser.add_argument("--image_size", type=int, default=None,
                        help="input side (default: the checkpoint's pretraining size; plain weights: 224)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")


def sampling_options_given(parser: argparse.ArgumentParser, argv: list[str] | None) -> list[str]:
    """The :data:`SAMPLING_OPTIONS` set on the command line ``argv`` (``--name`` each)."""
    parser.set_defaults(**dict.fromkeys(SAMPLING_OPTIONS))  # unset options then parse to None
    given = vars(parser.parse_args(argv))
    return [f"--{name}" for name in SAMPLING_OPTIONS if given[name] is not None]


def load_fixed_episodes(episodes_file: str | None, omniglot_runs: str | None) -> tuple[str, list[FixedEpisode]]:
    """The name (episode file stem, or ``omniglot``) and episodes of the fixed-episode input."""
    if omniglot_runs:
        return "omniglot", read_omniglot_runs(omniglot_runs)
    return Path(episodes_file).stem, read_episodes_file(episodes_file)


def run_fixed(source: Source, name: str, episodes: list[FixedEpisode], updates: dict[str, UpdateConfig], *,
              pixel_nn: bool, seed: int, image_size: int, device: str,
              baselines: dict[str, tuple[str, UpdateConfig]] | None = None) -> tuple[list[dict], list[dict]]:
    """Result entries of every update, and of the baselines (``baselines``: kind -> (update name,
    update), then the pixel nearest-neighbour row), on the fixed episodes."""
    n_way, shots = common_shape(episodes)
    shape = f"{n_way or 'mixed'}-way {shots or 'mixed'}-shot"
    ids = [e.name for e in episodes]

    def evaluate(src: Source, update_name: str, update: UpdateConfig) -> dict:
        result = evaluate_fixed_episodes(src.backbone, episodes, update, name=update_name, image_size=image_size,
                                         mean=src.mean, std=src.std, device=device, seed=seed,
                                         initial_state=load_initial_state(update))
        return {**result.to_dict(), "episode_ids": ids}

    results = [evaluate(source, update_name, update) for update_name, update in updates.items()]
    baseline_rows = [{**evaluate(baseline_source(source, kind, seed, image_size), *row), "baseline": kind}
                     for kind, row in (baselines or {}).items()]
    if pixel_nn:
        baseline_rows.append({**evaluate_pixel_nn(episodes, image_size).to_dict(), "episode_ids": ids,
                              "baseline": "pixel_nn"})
    for entry in results + baseline_rows:
        kind = entry.get("baseline", entry["update"])
        label = entry["update"] if kind == entry["update"] else f"{kind} baseline {entry['update']}"
        print(f"{name} {label} {len(episodes)} fixed episodes ({shape}): {entry['mean']:.2f} ± {entry['ci95']:.2f}")
    return results, baseline_rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_source_arguments(parser, data_required=False)
    fixed = parser.add_mutually_exclusive_group()
    fixed.add_argument("--episodes_file", help="evaluate the fixed episodes of this list (TSV: episode role path label) "
                                                "instead of sampling from --dataset")
    fixed.add_argument("--omniglot_runs", help="evaluate Omniglot's official one-shot runs in this folder (runXX/)")
    parser.add_argument("--pixel_nn", action="store_true",
                        help="fixed episodes: add the raw-pixel Euclidean nearest-neighbour baseline (row pixel_nn)")
    parser.add_argument("--split", default="labeled", help="target split the episodes come from (labeled | all | ...)")
    parser.add_argument("--n_way", type=int, default=5)
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--queries", type=int, default=15, help="query images per class")
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0, help="episode seed (same seed: same episodes)")
    parser.add_argument("--update", nargs="+", default=["lp"], help="update method name(s)")
    parser.add_argument("--table", default=None, help="study YAML whose 'updates' rows define the names")
    parser.add_argument("--baselines", nargs="*", default=[], choices=BASELINES,
                        help="also evaluate these trivial baselines on the same episodes (JSON key 'baselines')")
    parser.add_argument("--baseline_update", default="lp", help="update method of the baselines (default: lp)")
    parser.add_argument("--baselines_only", action="store_true",
                        help="evaluate only the --baselines (the checkpoint gives the architecture and input convention)")
    add_override_argument(parser, "epochs=10")
    parser.add_argument("--out", required=True, help="result JSON")
    args = parser.parse_args(argv)
    fixed_input = args.episodes_file or args.omniglot_runs
    if fixed_input:
        clash = sampling_options_given(parser, argv)
        if clash:
            parser.error(f"{', '.join(clash)}: not allowed with --episodes_file / --omniglot_runs (the episodes are fixed)")
    elif not (args.dataset and args.root):
        parser.error("--dataset and --root are required unless --episodes_file or --omniglot_runs is given")
    elif args.pixel_nn:
        parser.error("--pixel_nn needs fixed episodes (--episodes_file or --omniglot_runs)")
    if args.baselines_only and not args.baselines:
        parser.error("--baselines_only needs --baselines")
    try:
        table = load_study(args.table).update_table() if args.table else None
        updates = {} if args.baselines_only else resolve_updates(args.update, table, args.overrides)
        probe = resolve_updates([args.baseline_update], table, args.overrides) if args.baselines else {}
        baselines = {kind: (args.baseline_update, probe[args.baseline_update]) for kind in args.baselines}
        source = load_source(args.checkpoint, args.backbone, args.weights)
        if fixed_input:
            name, episodes = load_fixed_episodes(args.episodes_file, args.omniglot_runs)
        else:
            data = build_dataset(args.dataset, args.root, args.split)
    except (DatasetLayoutError, FileNotFoundError, ValueError) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        sys.exit(1)
    device = pick_device(args.device)
    size = args.image_size or source.image_size
    if fixed_input:
        results, baseline_rows = run_fixed(source, name, episodes, updates, pixel_nn=args.pixel_nn, seed=args.seed,
                                           image_size=size, device=device, baselines=baselines)
        n_way, shots = common_shape(episodes)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, {"dataset": name, "episodes_source": os.path.abspath(fixed_input), "checkpoint": source.name,
                         "n_way": n_way, "shots": shots, "seed": args.seed, "image_size": size, "results": results,
                         "baselines": baseline_rows, "chance": chance_accuracy(n_way) if n_way else None})
        print(f"Written: {out}")
        return
    results = []
    for name, update in updates.items():
        for k in args.shots:
            entry = run_cell(source, data, name, update, k, n_way=args.n_way, queries=args.queries,
                             episodes=args.episodes, seed=args.seed, image_size=size, device=device)
            print(f"{args.dataset} {name} {args.n_way}-way {k}-shot: {entry['mean']:.2f} ± {entry['ci95']:.2f}")
            results.append(entry)
    baseline_rows = []
    for kind, (name, update) in baselines.items():
        base = baseline_source(source, kind, args.seed, size)
        for k in args.shots:
            entry = run_cell(base, data, name, update, k, n_way=args.n_way, queries=args.queries,
                             episodes=args.episodes, seed=args.seed, image_size=size, device=device)
            print(f"{args.dataset} {kind} baseline {name} {args.n_way}-way {k}-shot: "
                  f"{entry['mean']:.2f} ± {entry['ci95']:.2f}")
            baseline_rows.append({**entry, "baseline": kind})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, {"dataset": args.dataset, "checkpoint": source.name, "split": args.split, "n_way": args.n_way,
                     "queries": args.queries, "seed": args.seed, "results": results, "baselines": baseline_rows,
                     "chance": chance_accuracy(args.n_way)})
    print(f"Written: {out}")


if __name__ == "__main__":
    main()
