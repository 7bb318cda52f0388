"""The handwritten digits that ship with scikit-learn (1,797 8x8 grey images, 10 classes),
exported as an ImageFolder tree for the mini recipes: real data, no download.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def export_digits(out: str | Path, size: int = 32, test_fraction: float = 0.25, seed: int = 0,
                  classes: Sequence[int] | None = None) -> dict:
    """Write ``<out>/{train,test}/<digit>/<index>.png`` upsampled (bicubic) to ``size`` x ``size``.

    The split is stratified and fixed by ``seed`` (0.25: 1,347 train / 450 test images).
    ``classes`` keeps only those digits (e.g. ``[0, 1, 2, 3, 4]`` for a few-shot source and
    ``[5, ..., 9]`` for its target); the split is drawn over all ten digits first, so an image
    lands in the same split whatever subset is exported.
    ``<out>/digits.json`` records the parameters and counts; re-running with the same parameters
    does nothing, other parameters rebuild the tree. The tree is written to a temporary folder
    and renamed into place, so an interrupted export leaves nothing half-written.

    Returns the contents of ``digits.json``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    out = Path(out)
    keep = sorted({int(c) for c in classes}) if classes is not None else list(range(10))
    if not keep or keep[0] < 0 or keep[-1] > 9:
        raise ValueError(f"digit classes must be a non-empty subset of 0..9, got {classes!r}")
    params = {"size": size, "test_fraction": test_fraction, "seed": seed}
    if classes is not None:
        params["classes"] = keep
    meta_file = out / "digits.json"
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        if meta.get("params") == params:
            return meta
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    index = np.arange(len(images))
    train_idx, test_idx = train_test_split(index, test_size=test_fraction, random_state=seed, stratify=digits.target)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    counts = {}
    for split, ids in (("train", train_idx), ("test", test_idx)):
        ids = [i for i in sorted(ids) if digits.target[i] in keep]
        for i in ids:
            folder = tmp / split / str(digits.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i], mode="L").resize((size, size), Image.BICUBIC).save(folder / f"{i:04d}.png")
        counts[split] = len(ids)
    meta = {"params": params, "counts": counts, "classes": [str(c) for c in keep]}
    (tmp / "digits.json").write_text(json.dumps(meta, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return meta
