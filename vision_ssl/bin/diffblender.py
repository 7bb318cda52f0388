"""DiffBlender, one sub-command per recipe stage (``recipes/diffblender.sh``)::

    python -m vision_ssl.bin.diffblender prepare --config C [--set KEY=VALUE ...] [--preview grid.png]
    python -m vision_ssl.bin.diffblender base --out DIR [--steps N --vae_steps N --accelerator cpu ...]
    python -m vision_ssl.bin.diffblender train --config C --expdir D [--set KEY=VALUE ...]
        [--resume auto|never|force]
    python -m vision_ssl.bin.diffblender sample --config C --adapter A --out DIR [--num N]
        [--modalities all|none|"box color"] [--set KEY=VALUE ...]
    python -m vision_ssl.bin.diffblender eval --samples DIR [DIR ...] [--fid_features inception|random]
        [--fid_inception_weights PTH] [--clip_model CLIP_DIR] [--detections DET.json] [--table results.md]
    python -m vision_ssl.bin.diffblender convert --official checkpoint_latest.pth --base SD14_DIR --out DIR
        [--trust true]

``prepare`` checks a dataset and fills the prepared-condition cache (``data.cache_dir``);
``base`` trains the tiny frozen base of the mini recipe into a diffusers Stable Diffusion folder;
``train`` trains the adapter on a frozen base through the experiment runner (resumable);
``sample`` generates images under the conditions of the evaluation split; ``eval`` scores sample
folders (FID, CLIP score, box alignment) into ``metrics.json`` and a Markdown table; ``convert``
turns the official release into a diffusers pipeline folder (``DiffBlenderPipeline.from_pretrained``).
``python -m vision_ssl.bin.diffblender COMMAND --help`` describes each.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import fields

from compact_ssl.cli import command_parser, dispatch
from compact_ssl.config import add_override_argument

PROG = "python -m vision_ssl.bin.diffblender"


def _parser(command: str, doc: str | None) -> argparse.ArgumentParser:
    return command_parser(PROG, command, doc)


def main_prepare(argv: list[str]) -> int:
    """``prepare``: check the data of a config and fill its condition cache."""
    from vision_ssl.data.base import DatasetLayoutError
    from vision_ssl.diffblender import prepare as module
    from vision_ssl.diffblender.config import load_config
    from vision_ssl.diffblender.data.coco import AnnotationError

    parser = _parser("prepare", module.__doc__)
    parser.add_argument("--config", default=None, help="experiment YAML (its data: section is used)")
    add_override_argument(parser, "data.cache_dir=dump/cache")
    parser.add_argument("--preview", default=None, help="write a condition grid of the first samples here (PNG)")
    args = parser.parse_args(argv)
    try:
        module.prepare(load_config(args.config, args.overrides).data, args.preview)
    except (DatasetLayoutError, AnnotationError, FileNotFoundError, ValueError) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    return 0


def main_base(argv: list[str]) -> int:
    """``base``: train, save and score the tiny frozen base of the mini recipe."""
    from vision_ssl.diffblender.base_training import BaseTrainingConfig, build_base

    parser = _parser("base", build_base.__doc__)
    parser.add_argument("--out", required=True, help="output folder (diffusers SD layout)")
    parser.add_argument("--steps", type=int, default=BaseTrainingConfig.unet_steps, help="UNet training steps")
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator (cpu, gpu, auto)")
    for f in fields(BaseTrainingConfig):
        if f.name != "unet_steps":
            kind = (lambda v: v.lower() == "true") if isinstance(f.default, bool) else type(f.default)
            parser.add_argument(f"--{f.name}", type=kind, default=f.default, help=f"(default {f.default})")
    args = vars(parser.parse_args(argv))
    out, accelerator = args.pop("out"), args.pop("accelerator")
    summary = build_base(out, BaseTrainingConfig(unet_steps=args.pop("steps"), **args), accelerator)
    ev = summary["eval"]
    print(f"tiny base at {out}: colour match {ev['color_match']:.3f} (chance {ev['chance_color_match']:.2f}), "
          f"centre spread {ev['centre_spread']:.3f} (real {ev['real_centre_spread']:.3f}), random-feature FD "
          f"{ev['fid_proxy']:.3f} (real vs real {ev['fid_proxy_real_vs_real']:.3f}, vs noise "
          f"{ev['fid_proxy_real_vs_noise']:.3f})")
    return 0


def main_train(argv: list[str]) -> int:
    """``train``: the adapter on a frozen base (:class:`vision_ssl.diffblender.experiment.AdapterTraining`)."""
    from vision_ssl.diffblender.experiment import AdapterTraining

    AdapterTraining().main(argv)
    return 0


def main_sample(argv: list[str]) -> int:
    """``sample``: images of the evaluation split under a chosen set of conditions."""
    import torch

    from vision_ssl.diffblender import sampling
    from vision_ssl.diffblender.config import load_config

    parser = _parser("sample", sampling.__doc__)
    parser.add_argument("--config", required=True, help="experiment YAML (the training config)")
    parser.add_argument("--adapter", required=True, help="adapter.safetensors written by the train sub-command")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--num", type=int, default=64, help="evaluation images to generate")
    parser.add_argument("--modalities", default="all",
                        help='conditions passed to the model: "all" (every one the data has), "none" (text only), '
                             'or names, e.g. "box color"')
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_override_argument(parser, "sample.num_inference_steps=25")
    args = parser.parse_args(argv)
    names = {"all": None, "none": []}.get(args.modalities, args.modalities.split())
    manifest = sampling.sample(load_config(args.config, args.overrides), args.adapter, args.out, args.num, names,
                               args.device)
    print(f"{len(manifest['samples'])} images ({args.modalities}) -> {args.out}")
    return 0


def main_eval(argv: list[str]) -> int:
    """``eval``: metrics of sample folders and their table."""
    from vision_ssl.diffblender import evaluation

    parser = _parser("eval", evaluation.__doc__)
    parser.add_argument("--samples", nargs="+", required=True, help="folders written by the sample sub-command")
    parser.add_argument("--fid_features", default="random", choices=evaluation.FID_FEATURES)
    parser.add_argument("--fid_inception_weights", default=None,
                        help="local FID Inception weights (pt_inception-2015-12-05-6726825d.pth) for --fid_features "
                             "inception (default: $COMPACT_SSL_FID_INCEPTION, then torch hub's cache)")
    parser.add_argument("--clip_model", default="", help="local CLIPModel folder for the CLIP score (optional)")
    parser.add_argument("--detections", default="",
                        help="detector boxes on the generated images of the first folder (JSON, optional)")
    parser.add_argument("--table", default="", help="Markdown table over the folders (results.json beside it)")
    args = parser.parse_args(argv)
    try:
        rows = evaluation.evaluate_folders(args.samples, args.fid_features, args.clip_model or None,
                                           args.detections or None, args.table or None, args.fid_inception_weights)
    except FileNotFoundError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    if args.table:
        print(evaluation.to_markdown(rows))
    return 0


def main_convert(argv: list[str]) -> int:
    """``convert``: the official DiffBlender checkpoint on an SD-1.4 folder -> a diffusers pipeline folder."""
    from compact_ssl.unpickle import UnsafePickleError
    from vision_ssl.diffblender.pipeline import DiffBlenderPipeline

    parser = _parser("convert", main_convert.__doc__)
    parser.add_argument("--official", required=True, help="checkpoint_latest.pth of the DiffBlender release")
    parser.add_argument("--base", required=True, help="diffusers Stable Diffusion 1.4 folder")
    parser.add_argument("--out", required=True, help="output folder (DiffBlenderPipeline.from_pretrained(out) reads it)")
    parser.add_argument("--trust", choices=("true", "false"), default="false",
                        help="true: unpickle the checkpoint fully, which can run code from it; only for a file from "
                             "a source you trust (default false: refuse anything but weights and configs)")
    args = parser.parse_args(argv)
    try:
        pipe = DiffBlenderPipeline.from_official(args.official, args.base, trust=args.trust == "true")
    except (UnsafePickleError, FileNotFoundError, ValueError) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    pipe.save_pretrained(args.out)
    print(f"{args.official} + {args.base} -> {args.out} (modalities {list(pipe.adapter.adapter_config.modalities)})")
    return 0


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "prepare": main_prepare, "base": main_base, "train": main_train, "sample": main_sample, "eval": main_eval,
    "convert": main_convert}


def main(argv: list[str] | None = None) -> int:
    """Run the sub-command named by the first argument; returns the exit status."""
    return dispatch(PROG, __doc__, COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
