"""Pretrain a mini HuBERT teacher (first HuBERT iteration) or reuse the cached one.

``python -m audio_compress.bin.pretrain_teacher --config C --cache_root DIR --set data.train=T --set data.dev=D
[--out TEACHER_DIR] [--check | --initial]``

MFCC frames of the training set -> k-means cluster ids -> masked prediction on a transformers
``HubertModel`` (see :mod:`audio_compress.teachers.pretrain`). The run and its teacher live in
``DIR/<architecture>-<hash>/`` (the hash covers the audio content and the config), so a rerun with the
same data and config trains nothing; ``--out`` gets an atomically written copy of the teacher folder.
Prints the teacher folder on the last line. ``--initial --out DIR`` trains nothing and writes the model that
pretraining starts from (random Transformer seeded by ``trainer.seed``, the filterbank and deltas starts the
config asks for) as a teacher folder: the "random teacher" a benchmark compares the pretrained one with.
"""

from __future__ import annotations

import argparse
import shutil
import sys

from audio_compress.teachers.pretrain import PretrainConfig, pretrain_teacher, write_initial_teacher
from compact_ssl.config import ConfigError, add_override_argument
from compact_ssl.io import staged_folder
from compact_ssl.lock import LockHeldError
from compact_ssl.training import ConfigDriftError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="pretraining YAML (default: the PretrainConfig defaults)")
    parser.add_argument("--cache_root", required=True, help="folder of cached teachers, e.g. <exp_root>/teachers")
    parser.add_argument("--out", default=None, help="also copy the teacher folder here (atomically)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                      help="only validate the config and print its architecture (a recipe's preflight)")
    mode.add_argument("--initial", action="store_true",
                      help="train nothing: write the model pretraining starts from to --out (the random teacher)")
    add_override_argument(parser)
    args = parser.parse_args(argv)
    if args.initial and not args.out:
        parser.error("--initial writes the untrained teacher to --out: give --out DIR")
    try:
        config = PretrainConfig.load(args.config, args.overrides)
        if args.check:
            print(config.architecture)
            return 0
        if args.initial:
            write_initial_teacher(config, args.out)
            print(args.out)
            return 0
        teacher = pretrain_teacher(config, args.cache_root)
        if args.out:
            with staged_folder(args.out) as staging:
                shutil.copytree(teacher, staging, dirs_exist_ok=True)
    except (ConfigError, ConfigDriftError, FileNotFoundError, KeyError, LockHeldError, NotADirectoryError,
            ValueError) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    print(teacher)
    return 0


if __name__ == "__main__":
    sys.exit(main())
