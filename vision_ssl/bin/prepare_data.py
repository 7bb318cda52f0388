"""Data stage of the vision recipes: optionally export the scikit-learn digits, then check that a
dataset root reads correctly.

``python -m vision_ssl.bin.prepare_data --dataset cifar100 --root R [--splits train test]``
opens every split, decodes its first and last image and prints the counts; a missing or malformed
root exits with status 1 and a message naming the expected layout and where to download the data.
``--make_digits true --size 32`` first writes the digits as an ImageFolder tree at ``R``
(mini recipes; no download); ``--digits_classes 5 6 7 8 9`` keeps only those digits.
"""

from __future__ import annotations

import argparse
import sys

from vision_ssl.data import DATASETS, DatasetLayoutError, build_dataset, export_digits


def check(dataset: str, root: str, splits: list[str]) -> dict[str, int]:
    """Images per split (after decoding each split's first and last image)."""
    counts = {}
    for split in splits:
        data = build_dataset(dataset, root, split)
        for index in (0, len(data) - 1):
            data[index]
        counts[split] = len(data)
        print(f"{dataset} {split}: {len(data)} images, {len(data.classes)} classes ({', '.join(data.classes[:5])}"
              f"{', ...' if len(data.classes) > 5 else ''})")
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument("--root", required=True, help="dataset root")
    parser.add_argument("--splits", nargs="+", default=None,
                        help="splits to check (default: the dataset's train and test splits)")
    parser.add_argument("--make_digits", default="false", choices=["true", "false"],
                        help="first export scikit-learn's digits to <root> in ImageFolder layout")
    parser.add_argument("--size", type=int, default=32, help="side of the exported digit images")
    parser.add_argument("--seed", type=int, default=0, help="seed of the digits train/test split")
    parser.add_argument("--digits_classes", type=int, nargs="+", default=None,
                        help="export only these digit classes (e.g. 0 1 2 3 4 as a few-shot source); default all ten")
    args = parser.parse_args(argv)
    if args.make_digits == "true":
        meta = export_digits(args.root, size=args.size, seed=args.seed, classes=args.digits_classes)
        print(f"digits at {args.root}: {meta['counts']} ({args.size}x{args.size})")
    info = DATASETS[args.dataset]
    try:
        check(args.dataset, args.root, args.splits or [info.train_split, info.test_split])
    except DatasetLayoutError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
