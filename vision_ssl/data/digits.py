"""The handwritten digits that ship with scikit-learn (1,797 8x8 grey images, 10 classes),
exported as an ImageFolder tree for the mini recipes: real data, no download.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image


def export_digits(out: str | Path, size: int = 32, test_fraction: float = 0.25, seed: int = 0) -> dict:
    """Write ``<out>/{train,test}/<digit>/<index>.png`` upsampled (bicubic) to ``size`` x ``size``.

    The split is stratified and fixed by ``seed`` (0.25: 1,347 train / 450 test images).
    ``<out>/digits.json`` records the parameters and counts; re-running with the same parameters
    does nothing, other parameters rebuild the tree. The tree is written to a temporary folder
    and renamed into place, so an interrupted export leaves nothing half-written.

    Returns the contents of ``digits.json``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    out = Path(out)
    params = {"size": size, "test_fraction": test_fraction, "seed": seed}
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
        for i in sorted(ids):
            folder = tmp / split / str(digits.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i], mode="L").resize((size, size), Image.BICUBIC).save(folder / f"{i:04d}.png")
        counts[split] = len(ids)
    meta = {"params": params, "counts": counts, "classes": [str(c) for c in range(10)]}
    (tmp / "digits.json").write_text(json.dumps(meta, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return meta
