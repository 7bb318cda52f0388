"""Train the tiny frozen base of the DiffBlender mini recipe on synthetic shapes and save it as a
diffusers Stable Diffusion folder:
``python -m vision_ssl.bin.diffblender_base --out DIR [--steps N --vae_steps N ...]``.

``DIR`` receives ``unet/ vae/ text_encoder/ tokenizer/ scheduler/ model_index.json`` (readable
by ``StableDiffusionPipeline.from_pretrained``), ``samples.png`` (images generated from one-shape
captions), ``logs/`` (CSV losses) and ``base_training.json`` (losses and the measured figures:
colour match of generated images, centre spread, random-feature Frechet distances). The folder is
assembled beside ``DIR`` and renamed into place; re-running with ``base_training.json`` present
does nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from dataclasses import fields
from pathlib import Path

from torchvision.utils import save_image

from vision_ssl.io import write_json
from vision_ssl.diffblender.base_training import BaseTrainingConfig, eval_captions, evaluate_base, generate, train_base
from vision_ssl.diffblender.tiny import build_tiny_components, save_tiny_base


def build_base(out: str | Path, config: BaseTrainingConfig, accelerator: str = "auto") -> dict:
    """Train, save and score the tiny base at ``out`` (skipped when already done); returns
    ``base_training.json``."""
    out = Path(out)
    done = out / "base_training.json"
    if done.is_file():
        print(f"{out}: tiny base already trained; skipping (delete the folder to retrain)")
        return json.loads(done.read_text())
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    components = build_tiny_components(tmp / "tokenizer", seed=config.seed, latent_factor=config.latent_factor)
    summary = train_base(components, config, accelerator, logdir=str(tmp / "logs"))
    save_tiny_base(components, tmp)
    summary["eval"] = evaluate_base(components, config)
    captions, _ = eval_captions(16)
    save_image(generate(components, captions, config.resolution, config.num_inference_steps, config.guidance_scale,
                        seed=config.seed), tmp / "samples.png", nrow=8)
    write_json(tmp / "base_training.json", summary)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (diffusers SD layout)")
    parser.add_argument("--steps", type=int, default=BaseTrainingConfig.unet_steps, help="UNet training steps")
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator (cpu, gpu, auto)")
    defaults = BaseTrainingConfig()
    for f in fields(BaseTrainingConfig):
        if f.name != "unet_steps":
            kind = (lambda v: v.lower() == "true") if isinstance(getattr(defaults, f.name), bool) else type(f.default)
            parser.add_argument(f"--{f.name}", type=kind, default=f.default, help=f"(default {f.default})")
    args = vars(parser.parse_args(argv))
    out, accelerator = args.pop("out"), args.pop("accelerator")
    config = BaseTrainingConfig(unet_steps=args.pop("steps"), **args)
    summary = build_base(out, config, accelerator)
    ev = summary["eval"]
    print(f"tiny base at {out}: colour match {ev['color_match']:.3f} (chance {ev['chance_color_match']:.2f}), "
          f"centre spread {ev['centre_spread']:.3f} (real {ev['real_centre_spread']:.3f}), random-feature FD "
          f"{ev['fid_proxy']:.3f} (real vs real {ev['fid_proxy_real_vs_real']:.3f}, vs noise "
          f"{ev['fid_proxy_real_vs_noise']:.3f})")


if __name__ == "__main__":
    main()
