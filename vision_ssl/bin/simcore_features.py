"""Embed a dataset with a pretrained encoder for SimCore's coreset selection:
``python -m vision_ssl.bin.simcore_features --checkpoint C --dataset D --root R --split S --out F``.

Uses the backbone of the checkpoint ``C`` (from ``vision_ssl.bin.pretrain``) and its config's
evaluation transform (``data.eval_aug`` at ``data.image_size``: Resize 256 + CenterCrop 224 in
the full recipes) and normalisation. Writes l2-normalised float32 shards of ``--shard_size`` rows,
``items.tsv`` and ``features.json`` to ``F`` (see :mod:`vision_ssl.simcore.features`), with a
progress bar; an interrupted run resumes after its last complete shard, a finished one is skipped.
"""

from __future__ import annotations

import argparse

import torch

from vision_ssl.augment import AUGMENTATIONS, build_transform
from vision_ssl.data import DATASETS, build_dataset
from vision_ssl.methods import load_pretrained
from vision_ssl.simcore.features import extract_to_shards


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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


if __name__ == "__main__":
    main()
