"""Sampling with a trained DiffBlender adapter under the conditions of evaluation data.

The first ``num`` images of the evaluation split (COCO ``data.val_split``, or the synthetic
shapes' validation set) give the captions and conditions; ``modalities`` chooses which of the
data's conditions are passed (``[]``: text only), which is how ablations such as "with / without
the box condition" are made. The output folder receives ``images/<key>.png``, ``grid.png`` (each
condition beside its result, first batch), ``real/<key>.png`` (the data's own images, for FID)
and ``manifest.json`` (caption, requested boxes and phrases, image paths, sampling settings),
which :mod:`vision_ssl.diffblender.evaluation` scores. Sampling settings come from the config's
``sample`` section (steps, guidance, gate schedules, mode guidance, seed).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset
from torchvision.utils import save_image
from tqdm import tqdm

from compact_ssl.io import write_json
from vision_ssl.diffblender.config import DiffBlenderConfig
from vision_ssl.diffblender.data import build_condition_dataset, collate_conditions
from vision_ssl.diffblender.pipeline import DiffBlenderPipeline
from vision_ssl.diffblender.visualize import condition_grid


def keep_modalities(conditions: dict, names: list[str]) -> dict:
    """The entries of ``conditions`` named in ``names`` (an unknown name is an error)."""
    unknown = sorted(set(names) - set(conditions))
    if unknown:
        raise ValueError(f"--modalities {unknown} are not produced by the data (it has {sorted(conditions)}); "
                         "check data.modalities")
    return {name: conditions[name] for name in names}


def sample(config: DiffBlenderConfig, adapter: str | Path, out: str | Path, num: int,
           modalities: list[str] | None = None, device: str = "cpu") -> dict:
    """Generate ``num`` images for the evaluation split with the conditions named in ``modalities``
    (None: every one the data has) and write them with a manifest; returns the manifest."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "real").mkdir(parents=True, exist_ok=True)
    dataset = build_condition_dataset(config.data, "val")
    if len(dataset) == 0:
        raise ValueError(f"{dataset.name}: the evaluation split is empty (data.val_split / data.shapes_val_count)")
    subset = Subset(dataset, range(min(num, len(dataset))))
    loader = DataLoader(subset, batch_size=config.data.batch_size, shuffle=False,
                        collate_fn=lambda s: collate_conditions(s, config.data.max_boxes, config.data.max_persons))
    s = config.sample
    pipe = DiffBlenderPipeline.from_pretrained(config.base, adapter=adapter, sampler=s.sampler).to(device)
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(s.seed)
    records = []
    for i, batch in enumerate(tqdm(loader, desc=f"sampling -> {out}")):
        names = list(batch["conditions"]) if modalities is None else modalities
        conditions = keep_modalities(batch["conditions"], names)
        images = pipe(batch["captions"], conditions=conditions, negative_prompt=s.negative_prompt,
                      num_inference_steps=s.num_inference_steps, guidance_scale=s.guidance_scale,
                      mode_guidance={m: w for m, w in s.mode_guidance.items() if m in conditions} or None,
                      gate_spatial=s.gate_spatial, gate_nonspatial=s.gate_nonspatial, gate_image=s.gate_image,
                      generator=generator, height=config.data.resolution, width=config.data.resolution,
                      output_type="pt", resample_image_latents=s.resample_image_latents).images
        if i == 0:
            condition_grid({**batch, "conditions": conditions}, images).save(out / "grid.png")
        box = batch["conditions"].get("box")
        for j, key in enumerate(batch["keys"]):
            save_image(images[j], out / "images" / f"{key}.png")
            save_image((batch["pixel_values"][j] + 1) / 2, out / "real" / f"{key}.png")
            n = len(box["phrases"][j]) if box else 0
            records.append({"key": key, "caption": batch["captions"][j], "image": f"images/{key}.png",
                            "real": f"real/{key}.png", "boxes": box["boxes"][j, :n].tolist() if box else [],
                            "phrases": box["phrases"][j] if box else []})
    manifest = {"adapter": str(adapter), "base": config.base, "dataset": config.data.dataset,
                "modalities": names, "sample": asdict(s), "samples": records}
    write_json(out / "manifest.json", manifest)
    return manifest
