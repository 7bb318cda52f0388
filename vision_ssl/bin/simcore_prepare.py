"""Data stage of the mini SimCore recipe:
``python -m vision_ssl.bin.simcore_prepare --out data --target_classes 3 5 8 --per_class 40 [--omniglot DIR]``.

Exports scikit-learn's digits to ``<out>/digits`` (ImageFolder, ``--size`` pixels), then writes
the target set ``<out>/target/{train,test}/<digit>/`` and the open-set list ``<out>/openset.tsv``
(see :mod:`vision_ssl.simcore.mini`); ``--omniglot`` adds the Omniglot background images found
in that folder's ``images_background_small{1,2}.zip`` to the open set.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vision_ssl.data import export_digits
from vision_ssl.simcore.mini import make_mini_sets


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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


if __name__ == "__main__":
    main()
