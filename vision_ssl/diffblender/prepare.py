"""Data stage of the DiffBlender recipes: check a dataset and fill the prepared-condition cache.

For the training split and, when configured, the validation split :func:`prepare` parses the
annotations (COCO; the parsed index is cached), computes the colour palettes and CLIP style
embeddings of every image into ``data.cache_dir`` (skipping entries already there with the same
settings), checks the depth maps, and decodes the first and last sample.
``<cache_dir>/prepared_<name>.json`` records the counts.
"""

from __future__ import annotations

from pathlib import Path

from compact_ssl.io import write_json
from vision_ssl.diffblender.data import ConditionCache, DataConfig, build_condition_dataset
from vision_ssl.diffblender.data.coco import CocoDataset
from vision_ssl.diffblender.data.collate import collate_conditions
from vision_ssl.diffblender.visualize import condition_grid


def prepare(config: DataConfig, preview: str | Path | None = None) -> dict[str, dict]:
    """Prepare every configured split (and write a condition grid of the first training samples to
    ``preview``); returns ``{dataset name: summary}``."""
    if not config.cache_dir:
        raise ValueError("data.cache_dir is empty: set it to the folder that keeps the prepared conditions")
    cache = ConditionCache(config.cache_dir)
    has_val = config.val_split if config.dataset == "coco" else config.shapes_val_count
    splits = ["train", "val"] if has_val else ["train"]
    summaries = {}
    for split in splits:
        dataset = build_condition_dataset(config, split)
        status = dataset.attach_cache(cache, build=True)
        missing = dataset.check_depth() if isinstance(dataset, CocoDataset) else []
        if missing and not config.depth_optional:
            raise FileNotFoundError(f"{config.depth_dir}: {len(missing)} of {len(dataset)} depth maps are missing "
                                    f"(first: {missing[0]}); produce them or set data.depth_optional: true")
        for index in (0, len(dataset) - 1):
            dataset[index]
        summary = {"items": len(dataset), "modalities": list(dataset.modalities), "cache": status,
                   "missing_depth": len(missing)}
        write_json(cache.folder / f"prepared_{dataset.name}.json", summary)
        print(f"{dataset.name}: {len(dataset)} items, conditions {', '.join(dataset.modalities) or 'none'}; "
              f"cache {status}; missing depth maps {len(missing)}")
        summaries[dataset.name] = summary
        if preview and split == "train":
            batch = collate_conditions([dataset[i] for i in range(min(8, len(dataset)))], config.max_boxes,
                                       config.max_persons)
            Path(preview).parent.mkdir(parents=True, exist_ok=True)
            condition_grid(batch).save(preview)
            print(f"condition grid of the first samples: {preview}")
    return summaries
