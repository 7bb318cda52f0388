"""Target and open set of the mini SimCore recipe, made from scikit-learn's digits (and, where
present, the small Omniglot background sets as out-of-distribution open-set images).

Target ``X``: ``per_class`` random train images of each of a few digit classes, as an ImageFolder
tree ``<out>/target/{train,test}/<digit>/`` (test: every test image of those classes). Open set
``U``: every other digits train image (all ten classes, label = the digit) plus the Omniglot
images (label -1), listed in ``<out>/openset.tsv``. The labels of ``U`` are never used for
selection, only to measure which fraction of a coreset comes from the target classes.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np

from compact_ssl.io import atomic_write_text, write_json
from vision_ssl.data.filelist import write_filelist

OMNIGLOT_ZIPS = ("images_background_small1.zip", "images_background_small2.zip")


def extract_omniglot(zip_dir: str | Path, out: str | Path) -> list[Path]:
    """Unpack the PNGs of the Omniglot ``images_background_small{1,2}.zip`` in ``zip_dir`` into ``out``
    (once; a finished folder is reused); returns the image paths, sorted."""
    zip_dir, out = Path(zip_dir), Path(out)
    done = out / "extracted.json"
    if not done.is_file():
        missing = [z for z in OMNIGLOT_ZIPS if not (zip_dir / z).is_file()]
        if missing:
            raise FileNotFoundError(f"{zip_dir}: {', '.join(missing)} not found (Omniglot's python/ folder, "
                                    "github.com/brendenlake/omniglot); pass another folder or none")
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        for name in OMNIGLOT_ZIPS:
            with zipfile.ZipFile(zip_dir / name) as z:
                z.extractall(tmp, [m for m in z.namelist() if m.endswith(".png")])
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        atomic_write_text(done, json.dumps({"zips": list(OMNIGLOT_ZIPS)}) + "\n")
    return sorted(out.rglob("*.png"))


def make_mini_sets(digits_root: str | Path, out: str | Path, target_classes: list[int], per_class: int,
                   omniglot: str | Path | None = None, seed: int = 0) -> dict:
    """Write ``<out>/target/`` and ``<out>/openset.tsv`` from an exported digits tree (see the module
    docstring); ``<out>/mini.json`` records parameters and counts, and a finished folder with the
    same parameters is left alone. Returns ``mini.json``'s contents."""
    digits_root, out = Path(digits_root), Path(out)
    params = {"digits_root": str(digits_root), "target_classes": sorted(target_classes), "per_class": per_class,
              "omniglot": str(omniglot) if omniglot else None, "seed": seed}
    meta_file = out / "mini.json"
    if meta_file.is_file() and json.loads(meta_file.read_text()).get("params") == params:
        return json.loads(meta_file.read_text())
    rng = np.random.default_rng(seed)
    target = out / "target"
    shutil.rmtree(target, ignore_errors=True)
    open_set: list[tuple[str, int]] = []
    for digit in range(10):
        files = sorted((digits_root / "train" / str(digit)).glob("*.png"))
        if not files:
            raise FileNotFoundError(f"{digits_root}/train/{digit}: no images; export the digits first "
                                    "(vision_ssl.data.export_digits)")
        chosen = set(rng.choice(len(files), per_class, replace=False).tolist()) if digit in target_classes else set()
        for i, f in enumerate(files):
            if i in chosen:
                (target / "train" / str(digit)).mkdir(parents=True, exist_ok=True)
                shutil.copy(f, target / "train" / str(digit) / f.name)
            else:
                open_set.append((str(f.resolve()), digit))
        if digit in target_classes:
            shutil.copytree(digits_root / "test" / str(digit), target / "test" / str(digit))
    omniglot_images = extract_omniglot(omniglot, out / "omniglot") if omniglot else []
    open_set += [(str(p.resolve()), -1) for p in omniglot_images]
    write_filelist(out / "openset.tsv", open_set)
    meta = {"params": params, "target_train": per_class * len(target_classes),
            "open_set": len(open_set), "open_set_digits": len(open_set) - len(omniglot_images),
            "open_set_target_class": sum(label in target_classes for _, label in open_set),
            "open_set_omniglot": len(omniglot_images)}
    write_json(meta_file, meta)
    return meta
