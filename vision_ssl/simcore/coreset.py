"""Drawing a coreset from an open set, from the feature folders of the target and the open set
(:mod:`vision_ssl.simcore.features`).

With ``method: simcore`` the target features are clustered (k-means) and the greedy rounds run
over the open-set shards (streamed: one shard in memory at a time); ``method: random`` draws a
uniform subset of ``sampling_ratio x |U|`` images, or as many as a SimCore coreset (``match``).

:func:`write_coreset` writes to its output folder ``coreset.tsv`` (the selected open-set images,
``path<TAB>label``), ``train.tsv`` (target images + coreset: the pretraining list for
``data.dataset: filelist``), ``indices.npy`` (selected open-set rows) and ``summary.json`` (size,
budget, rounds, utility of every round, stop round, threshold, recomputed pretraining ``epochs``,
open-set labels of the coreset).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np

from compact_ssl.io import read_json, write_json
from vision_ssl.data.filelist import write_filelist
from vision_ssl.simcore.budget import coreset_budget, random_coreset, recompute_epochs
from vision_ssl.simcore.config import CoresetConfig
from vision_ssl.simcore.features import FeatureShards
from vision_ssl.simcore.selection import select_coreset


def draw_coreset(config: CoresetConfig, target: FeatureShards, open_set: FeatureShards,
                 match: dict | None = None) -> dict:
    """Select the coreset (``match``: the ``summary.json`` of a coreset whose size a random one
    takes); returns ``summary.json``'s selection fields and ``indices``."""
    c = config
    if c.method == "simcore":
        budget = coreset_budget(len(target), len(open_set), c.stop, c.budget_ratio, c.sampling_ratio)
        result = select_coreset(target.load(), open_set, c.k, budget, c.stop, c.patience, c.threshold, c.seed, c.top_m)
        return {**result.summary(), "indices": result.indices}
    size = match["size"] if match else coreset_budget(len(target), len(open_set), False,
                                                       sampling_ratio=c.sampling_ratio)
    indices = random_coreset(len(open_set), size, np.random.default_rng(c.seed))
    return {"size": int(size), "budget": int(size), "matched": match is not None, "indices": indices}


def write_coreset(config: CoresetConfig, target_dir: str | Path, open_dir: str | Path, out: str | Path,
                  match_dir: str | Path | None = None) -> dict:
    """Draw the coreset and write ``out`` (see the module docstring); returns ``summary.json``.

    ``match_dir``: a coreset folder whose size a random coreset takes. A finished folder with the
    same settings is left alone.
    """
    out = Path(out)
    done = out / "summary.json"
    settings = {"config": dataclasses.asdict(config), "target": str(target_dir), "open_set": str(open_dir),
                "match": str(match_dir) if match_dir else None}
    if done.is_file() and read_json(done).get("settings") == settings:
        print(f"{out}: coreset already drawn; skipping (delete {done} to redo)")
        return read_json(done)
    target, open_set = FeatureShards(target_dir), FeatureShards(open_dir)
    if target.dim != open_set.dim:
        raise ValueError(f"feature widths differ: {target_dir} has {target.dim}, {open_dir} has {open_set.dim}; "
                         "extract both with the same encoder")
    match = read_json(Path(match_dir) / "summary.json") if match_dir else None
    drawn = draw_coreset(config, target, open_set, match)
    indices = drawn.pop("indices")
    out.mkdir(parents=True, exist_ok=True)
    open_paths, open_labels = open_set.items()
    target_paths, target_labels = target.items()
    coreset = [(open_paths[i], open_labels[i]) for i in indices]
    write_filelist(out / "coreset.tsv", coreset)
    write_filelist(out / "train.tsv", [*zip(target_paths, target_labels), *coreset])
    np.save(out / "indices.npy", indices)
    epochs = recompute_epochs(len(indices), config.max_epochs, config.epoch_reference, config.epoch_visits,
                              config.epoch_scale)
    summary = {"method": config.method, **drawn, "epochs": epochs, "target_size": len(target),
               "open_set_size": len(open_set),
               "coreset_labels": {str(k): v for k, v in sorted(Counter(label for _, label in coreset).items())},
               "settings": settings}
    write_json(done, summary)
    return summary
