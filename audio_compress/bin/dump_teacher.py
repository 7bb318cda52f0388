"""Dump teacher hidden states of a data dir in fp16 (run the teacher once instead of every epoch).

    python -m audio_compress.bin.dump_teacher --teacher hubert_base.pt --data data/train \\
        --out dump/train --layers 0,4,8,12 [--device cuda] [--shard_frames N]
    python -m audio_compress.bin.dump_teacher --config conf/star.yaml --data data/train --out dump/train

With ``--config`` the layers are those the distillation method of that config consumes
(:meth:`audio_compress.methods.DistillMethod.teacher_layers`) and ``--teacher`` defaults to the
config's ``teacher``; a config whose method cannot train from a dump is refused before the teacher
is loaded. The dump is written in ``<out>.partial`` and moved onto ``--out`` only once complete
(replacing a previous dump only then); re-running an interrupted dump resumes it from there,
re-running a finished one does nothing. Point ``data.dump_dir`` of the distillation config at
``--out`` to train from the dump.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from audio_compress.dump import DEFAULT_SHARD_FRAMES, dump_teacher_features
from compact_ssl.config import ConfigError, add_override_argument

if TYPE_CHECKING:
    from audio_compress.tasks.config import DistillConfig


def parse_layers(text: str) -> list[int]:
    try:
        layers = [int(v) for v in text.split(",") if v.strip() != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layers must be comma-separated integers, got {text!r}") from None
    if not layers:
        raise argparse.ArgumentTypeError("--layers is empty")
    return layers


def checked_config(config_path: str, overrides: list[str] | None = None) -> DistillConfig:
    """The distillation config, checked for training from a dump
    (:func:`~audio_compress.tasks.config.check_distill_config` with ``use_dump=True``) before any
    teacher is loaded or anything dumped; ``SystemExit`` with a message naming the file and key."""
    from audio_compress.tasks.config import check_distill_config, load_config

    try:
        config = load_config(config_path, overrides)
        check_distill_config(config, use_dump=True, where=config_path)
    except (ConfigError, FileNotFoundError) as err:
        raise SystemExit(str(err)) from err
    return config


def layers_from_config(config_path: str, teacher_num_layers: int, overrides: list[str] | None = None) -> list[int]:
    """Teacher layers a distillation config consumes (for its student and this teacher's depth);
    the config is checked first (:func:`checked_config`)."""
    from audio_compress.methods import get_method
    from audio_compress.models import get_student_config

    config = checked_config(config_path, overrides)
    student = get_student_config(config.student, **config.student_overrides)
    return get_method(config.method)(config, student, teacher_num_layers).teacher_layers()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", help="teacher spec for load_teacher (checkpoint, folder or architecture "
                        "name); default: the config's teacher")
    parser.add_argument("--data", required=True, help="Kaldi data dir (wav.scp + utt2num_samples)")
    parser.add_argument("--out", required=True, help="output folder of the dump")
    parser.add_argument("--layers", type=parse_layers, help="teacher hidden-state indices, e.g. 0,4,8,12")
    parser.add_argument("--config", help="distillation YAML to derive --layers (and --teacher) from")
    add_override_argument(parser, "data.resample=true")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--shard_frames", type=int, default=DEFAULT_SHARD_FRAMES,
                        help=f"frames per shard file (default {DEFAULT_SHARD_FRAMES})")
    parser.add_argument("--resample", default="false", choices=["true", "false"],
                        help="resample audio that is not 16 kHz instead of refusing it")
    parser.add_argument("--num_workers", type=int, default=2, help="audio reading workers")
    parser.add_argument("--progress", default="true", choices=["true", "false"])
    args = parser.parse_args(argv)

    if (args.layers is None) == (args.config is None):
        parser.error("give exactly one of --layers and --config")
    # a config that cannot train from a dump is refused before the teacher is even loaded
    config = checked_config(args.config, args.overrides) if args.config is not None else None
    teacher_spec = args.teacher
    if teacher_spec is None:
        if config is None:
            parser.error("--teacher is required without --config")
        teacher_spec = config.teacher

    from audio_compress.teachers import load_teacher

    teacher = load_teacher(teacher_spec, device=args.device)
    layers = args.layers
    if layers is None:
        layers = layers_from_config(args.config, teacher.num_layers, args.overrides)
        print(f"Layers from {args.config}: {layers}")
    out = dump_teacher_features(
        teacher, args.data, args.out, layers, shard_frames=args.shard_frames, device=args.device,
        resample=args.resample == "true", progress=args.progress == "true", num_workers=args.num_workers,
    )
    print(f"Teacher features of {args.data} (layers {sorted(set(layers))}) are in {out}")


if __name__ == "__main__":
    main()
