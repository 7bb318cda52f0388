"""Open-set and target features on disk: l2-normalised float32 ``.npy`` shards, read back
memory-mapped one shard at a time, so selection over millions of images never holds them all.

A feature folder holds ``shard_00000.npy`` ... (``shard_size`` rows each, the last one shorter),
``items.tsv`` (the images in row order, as a ``vision_ssl.data.filelist`` list), ``params.json``
(the extraction parameters, written first) and ``features.json`` (row count, width, shards and
parameters), written last.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from compact_ssl.io import atomic_write_with, write_json
from vision_ssl.data.base import LabeledImages
from vision_ssl.data.filelist import read_filelist, write_filelist


def _shard_name(i: int) -> str:
    return f"shard_{i:05d}.npy"


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save adds no ".npy" to the (temporary) name
        np.save(f, array)


class FeatureShards:
    """A feature folder: re-iterable over its shards (memory-mapped ``[rows, dim]`` arrays), so it
    can be passed as the ``chunks`` of :func:`vision_ssl.simcore.selection.greedy_select_streamed`."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        meta = self.folder / "features.json"
        if not meta.is_file():
            raise FileNotFoundError(f"{meta} not found: '{self.folder}' is not a finished feature folder "
                                    "(run the feature-extraction stage, python -m vision_ssl.bin.simcore features)")
        self.meta = json.loads(meta.read_text())

    def __len__(self) -> int:
        return self.meta["count"]

    @property
    def dim(self) -> int:
        return self.meta["dim"]

    def __iter__(self) -> Iterator[np.ndarray]:
        for name in self.meta["shards"]:
            yield np.load(self.folder / name, mmap_mode="r")

    def load(self) -> np.ndarray:
        """All rows in memory (for the small target set)."""
        return np.concatenate([np.asarray(s) for s in self]) if len(self) else np.zeros((0, self.dim), np.float32)

    def items(self) -> tuple[list[str], list[int]]:
        """``(paths, labels)`` of the rows, in order."""
        return read_filelist(self.folder / "items.tsv")


def _finished_shards(out: Path, params: dict, shard_size: int, total: int) -> int:
    """Complete shards left by an interrupted run with the same ``params`` (kept: extraction resumes
    after them); shards of other parameters are deleted and ``params.json`` records the new ones."""
    started = out / "params.json"
    if not started.is_file() or json.loads(started.read_text()) != {**params, "shard_size": shard_size}:
        for old in out.glob("shard_*.npy"):
            old.unlink()
        write_json(started, {**params, "shard_size": shard_size})
    done = 0
    while (out / _shard_name(done)).is_file():
        rows = np.load(out / _shard_name(done), mmap_mode="r").shape[0]
        if rows != min(shard_size, total - done * shard_size):
            break
        done += 1
    return done


@torch.no_grad()
def extract_to_shards(encoder: nn.Module, dataset: LabeledImages, out: str | Path, params: dict,
                      shard_size: int = 65536, batch_size: int = 256, num_workers: int = 4,
                      device: str = "cpu") -> dict:
    """Write ``encoder.features(x)["backbone"]`` (l2-normalised) of every ``dataset`` image to ``out``.

    ``dataset`` yields ``(tensor, label)``; its ``items`` must be image files (they go to ``items.tsv``).
    A folder finished with the same ``params`` is left alone; an interrupted one resumes after its
    last complete shard. Returns the contents of ``features.json``.
    """
    out = Path(out)
    meta_file = out / "features.json"
    if meta_file.is_file() and json.loads(meta_file.read_text()).get("params") == params:
        print(f"{out}: features already extracted; skipping (delete {meta_file} to redo)")
        return json.loads(meta_file.read_text())
    if dataset.items and not isinstance(dataset.items[0], (str, os.PathLike)):
        raise ValueError(f"{params.get('dataset')}: images are not files; SimCore needs an image-file dataset "
                         "(imagefolder, imagenet, filelist, ...) to list the coreset")
    out.mkdir(parents=True, exist_ok=True)
    meta_file.unlink(missing_ok=True)
    total = len(dataset)
    write_filelist(out / "items.tsv", ((os.path.abspath(p), y) for p, y in zip(dataset.items, dataset.targets)))
    start_shard = _finished_shards(out, params, shard_size, total)
    start = start_shard * shard_size
    loader = DataLoader(Subset(dataset, range(start, total)), batch_size=batch_size, num_workers=num_workers,
                        shuffle=False, pin_memory=device.startswith("cuda"))
    encoder = encoder.to(device).eval()
    buffer: list[np.ndarray] = []
    buffered, shard = 0, start_shard

    def flush(rows: int) -> None:
        nonlocal buffer, buffered, shard
        block = np.concatenate(buffer)
        atomic_write_with(out / _shard_name(shard), lambda tmp: _save_npy(tmp, block[:rows]))
        buffer, buffered, shard = [block[rows:]], buffered - rows, shard + 1

    for x, _ in tqdm(loader, desc=f"features -> {out}", initial=start // batch_size,
                     total=start // batch_size + len(loader), unit="batch"):
        feats = nn.functional.normalize(encoder.features(x.to(device))["backbone"].float(), dim=1)
        buffer.append(feats.cpu().numpy())
        buffered += len(feats)
        while buffered >= shard_size:
            flush(shard_size)
    if buffered:
        flush(buffered)
    dim = int(np.load(out / _shard_name(0), mmap_mode="r").shape[1]) if total else 0
    meta = {"count": total, "dim": dim, "shard_size": shard_size,
            "shards": [_shard_name(i) for i in range(shard)], "params": params}
    write_json(meta_file, meta)
    return meta
