"""Draw a coreset from the open set:
``python -m vision_ssl.bin.simcore_select --config conf/coreset.yaml --target F_X --open_set F_U --out D``.

``F_X`` and ``F_U`` are feature folders from ``vision_ssl.bin.simcore_features``. With
``method: simcore`` the target features are clustered (k-means) and the greedy rounds run over
the open-set shards (streamed: one shard in memory at a time); ``method: random`` draws a uniform
subset of ``sampling_ratio x |U|`` images, or as many as the SimCore coreset in ``--match``.

Writes to ``D``: ``coreset.tsv`` (the selected open-set images, ``path<TAB>label``),
``train.tsv`` (target images + coreset: the pretraining list for ``data.dataset: filelist``),
``indices.npy`` (selected open-set rows) and ``summary.json`` (size, budget, rounds, utility of
every round, stop round, threshold, recomputed pretraining ``epochs``, open-set labels of the
coreset). A finished folder with the same settings is left alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections import Counter
from pathlib import Path

import numpy as np

from vision_ssl.io import write_json
from vision_ssl.data.filelist import write_filelist
from vision_ssl.simcore import CoresetConfig, coreset_budget, random_coreset, recompute_epochs, select_coreset
from vision_ssl.simcore.config import load_coreset_config
from vision_ssl.simcore.features import FeatureShards


def draw(config: CoresetConfig, target: FeatureShards, open_set: FeatureShards, match: dict | None = None) -> dict:
    """Select the coreset; returns ``summary.json``'s selection fields and ``indices``."""
    c = config
    if c.method == "simcore":
        budget = coreset_budget(len(target), len(open_set), c.stop, c.budget_ratio, c.sampling_ratio)
        result = select_coreset(target.load(), open_set, c.k, budget, c.stop, c.patience, c.threshold, c.seed, c.top_m)
        return {**result.summary(), "indices": result.indices}
    size = match["size"] if match else coreset_budget(len(target), len(open_set), False,
                                                       sampling_ratio=c.sampling_ratio)
    indices = random_coreset(len(open_set), size, np.random.default_rng(c.seed))
    return {"size": int(size), "budget": int(size), "matched": match is not None, "indices": indices}


def run(config: CoresetConfig, target_dir: str | Path, open_dir: str | Path, out: str | Path,
        match_dir: str | Path | None = None) -> dict:
    """Draw the coreset and write ``out`` (see the module docstring); returns ``summary.json``."""
    out = Path(out)
    done = out / "summary.json"
    settings = {"config": dataclasses.asdict(config), "target": str(target_dir), "open_set": str(open_dir),
                "match": str(match_dir) if match_dir else None}
    if done.is_file() and json.loads(done.read_text()).get("settings") == settings:
        print(f"{out}: coreset already drawn; skipping (delete {done} to redo)")
        return json.loads(done.read_text())
    target, open_set = FeatureShards(target_dir), FeatureShards(open_dir)
    if target.dim != open_set.dim:
        raise ValueError(f"feature widths differ: {target_dir} has {target.dim}, {open_dir} has {open_set.dim}; "
                         "extract both with the same encoder")
    match = json.loads((Path(match_dir) / "summary.json").read_text()) if match_dir else None
    drawn = draw(config, target, open_set, match)
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="coreset YAML (egs/*/simcore/conf/coreset.yaml)")
    parser.add_argument("--target", required=True, help="feature folder of the target set X")
    parser.add_argument("--open_set", required=True, help="feature folder of the open set U")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--match", default=None,
                        help="random baseline: draw as many images as the coreset folder given here")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config entry, e.g. --set method=random (repeatable)")
    args = parser.parse_args(argv)
    config = load_coreset_config(args.config, args.overrides)
    s = run(config, args.target, args.open_set, args.out, args.match)
    print(f"{config.method} coreset: {s['size']} of {s['open_set_size']} open-set images "
          f"(budget {s['budget']}, {s.get('rounds', '-')} rounds, stop round {s.get('stop_round')}); "
          f"pretraining epochs {s['epochs']} -> {Path(args.out) / 'train.tsv'}")


if __name__ == "__main__":
    main()
