"""Train the DiffBlender adapter on a frozen Stable Diffusion base:
``python -m vision_ssl.bin.diffblender_train --config C --expdir D [--set key=value ...]``.

``D`` receives ``config.yaml`` (resolved), ``checkpoints/last.ckpt`` (adapter weights and
optimiser state only, every ``train.ckpt_every_n_steps`` steps and at epoch ends), TensorBoard and
CSV logs, and at the end ``adapter.safetensors`` (the adapter alone, loadable with
``DiffBlenderPipeline.from_pretrained(base, adapter=...)``) and ``train_done.json``. Re-running
skips a finished run and resumes an interrupted one from ``last.ckpt`` (the base is reloaded
from ``base``). Multi-GPU: ``train.devices`` / ``train.num_nodes``; ``data.batch_size`` is per device.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import lightning as L

from vision_ssl.bin.common import make_trainer
from vision_ssl.io import write_json
from vision_ssl.diffblender.config import DiffBlenderConfig, load_config, save_config
from vision_ssl.diffblender.data import DiffBlenderDataModule
from vision_ssl.diffblender.pipeline import load_base_components
from vision_ssl.diffblender.task import DiffBlenderTask
from vision_ssl.diffblender.weights import save_adapter


def check_modalities(config: DiffBlenderConfig) -> None:
    """Every modality the data produces must have an encoder in the adapter."""
    missing = sorted(set(config.data.modalities) - set(config.adapter.modalities))
    if missing:
        raise ValueError(f"data.modalities {missing} have no encoder in adapter.modalities "
                         f"({sorted(config.adapter.modalities)}); add them to the adapter or drop them from the data")


def train(config: DiffBlenderConfig, expdir: str | Path, resume: bool = True) -> dict:
    """Train (or resume, or skip when finished) the adapter; returns ``train_done.json``."""
    expdir = Path(expdir)
    done = expdir / "train_done.json"
    if done.is_file():
        print(f"{expdir}: training already finished; skipping (delete {done} to retrain)")
        return json.loads(done.read_text())
    if not config.base:
        raise ValueError("base is empty: set it to a diffusers Stable Diffusion folder (unet/ vae/ text_encoder/ "
                         "tokenizer/ scheduler/), e.g. --set base=/path/to/stable-diffusion-v1-4")
    check_modalities(config)
    expdir.mkdir(parents=True, exist_ok=True)
    save_config(config, expdir / "config.yaml")
    t = config.train
    L.seed_everything(t.seed, workers=True)
    task = DiffBlenderTask(config, load_base_components(config.base))
    data = DiffBlenderDataModule(config.data)
    trainer = make_trainer(t, expdir, t.max_epochs, t.precision, max_steps=t.max_steps,
                           last_every_n_steps=t.ckpt_every_n_steps, gradient_clip_val=t.grad_clip or None)
    last = expdir / "checkpoints" / "last.ckpt"
    ckpt_path = str(last) if resume and last.is_file() else None
    if ckpt_path:
        print(f"Resuming from {ckpt_path}")
    trainer.fit(task, datamodule=data, ckpt_path=ckpt_path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    summary = {"steps": trainer.global_step, "epochs": trainer.current_epoch, "adapter": str(expdir / "adapter.safetensors"),
               "trainable_parameters": sum(p.numel() for p in task.adapter.parameters()), "metrics": metrics}
    if trainer.global_rank == 0:
        save_adapter(task.adapter, expdir / "adapter.safetensors")
        write_json(done, summary)
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="experiment YAML (egs/*/diffblender/conf/*.yaml)")
    parser.add_argument("--expdir", required=True, help="experiment folder")
    parser.add_argument("--resume", default="true", choices=["true", "false"], help="continue from last.ckpt")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config entry, e.g. --set train.max_steps=100 (repeatable)")
    args = parser.parse_args(argv)
    summary = train(load_config(args.config, args.overrides), args.expdir, resume=args.resume == "true")
    print(f"{summary['steps']} steps, {summary['trainable_parameters']:,} trainable parameters -> {summary['adapter']}")


if __name__ == "__main__":
    main()
