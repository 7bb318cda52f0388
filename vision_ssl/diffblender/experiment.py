"""Adapter training on a frozen Stable Diffusion base through the experiment runner
(:class:`compact_ssl.training.Experiment`): ``python -m vision_ssl.bin.diffblender train``."""

from __future__ import annotations

import argparse
from pathlib import Path

import lightning as L

from compact_ssl.config import ConfigError
from compact_ssl.training import Experiment, Setup, last_checkpoint
from vision_ssl.diffblender.config import DiffBlenderConfig
from vision_ssl.diffblender.data import DiffBlenderDataModule
from vision_ssl.diffblender.pipeline import load_base_components
from vision_ssl.diffblender.task import DiffBlenderTask
from vision_ssl.diffblender.weights import save_adapter

ADAPTER = "adapter.safetensors"


def check_modalities(config: DiffBlenderConfig) -> None:
    """Every modality the data produces must have an encoder in the adapter."""
    missing = sorted(set(config.data.modalities) - set(config.adapter.modalities))
    if missing:
        raise ConfigError(f"data.modalities {missing} have no encoder in adapter.modalities "
                          f"({sorted(config.adapter.modalities)}); add them to the adapter or drop them from the data")


class AdapterTraining(Experiment):
    """Train the DiffBlender adapter on a frozen Stable Diffusion base, in the experiment folder
    itself (``--seeds`` gives seed<N>/ folders).

    The run folder receives ``config.yaml`` (resolved), ``checkpoints/last.ckpt`` (adapter weights
    and optimiser state only, every ``trainer.ckpt_every_n_steps`` steps and at epoch ends),
    TensorBoard logs and the metric history ``csv/metrics.csv``, and at the end
    ``adapter.safetensors`` (the adapter alone, loadable with
    ``DiffBlenderPipeline.from_pretrained(base, adapter=...)``) and ``train_done.json``. Rerunning
    skips a finished run and resumes an interrupted one from ``last.ckpt`` (the base is reloaded
    from ``base``); a changed config is refused unless ``--resume never`` (fresh run) or
    ``--resume force`` (continue, recorded). The ``sample:`` section does not touch the weights and
    may change freely. Multi-GPU: ``trainer.devices`` / ``trainer.num_nodes``; ``data.batch_size``
    is per device.
    """

    config_class = DiffBlenderConfig
    seed_dirs = False
    done_name = "train_done.json"
    run_outputs = (ADAPTER,)
    description = __doc__  # the class docstring: the full help of the train sub-command
    volatile_keys = (*Experiment.volatile_keys, "sample")

    def check(self, config: DiffBlenderConfig, rundir: Path) -> None:
        if not config.base:
            raise ConfigError("base is empty: set it to a diffusers Stable Diffusion folder (unet/ vae/ text_encoder/ "
                              "tokenizer/ scheduler/), e.g. --set base=/path/to/stable-diffusion-v1-4")
        check_modalities(config)

    def setup(self, config: DiffBlenderConfig, rundir: Path) -> Setup:
        tcfg, ckpt_dir = config.trainer, rundir / "checkpoints"
        checkpoints = [last_checkpoint(ckpt_dir)]
        if tcfg.ckpt_every_n_steps > 0:
            checkpoints.append(last_checkpoint(ckpt_dir, tcfg.ckpt_every_n_steps))
        task = DiffBlenderTask(config, load_base_components(config.base))
        return Setup(task, DiffBlenderDataModule(config.data), checkpoints,
                     trainer_kwargs={"gradient_clip_val": tcfg.grad_clip or None, "num_sanity_val_steps": 0})

    def summarize(self, config: DiffBlenderConfig, setup: Setup, trainer: L.Trainer, rundir: Path) -> dict:
        return {"steps": trainer.global_step, "epochs": trainer.current_epoch, "adapter": str(rundir / ADAPTER),
                "trainable_parameters": sum(p.numel() for p in setup.module.adapter.parameters()),
                "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()}}

    def export(self, config: DiffBlenderConfig, setup: Setup, trainer: L.Trainer, rundir: Path, summary: dict) -> None:
        save_adapter(setup.module.adapter, rundir / ADAPTER)

    def describe(self, seed: int, summary: dict) -> str:
        return (f"{summary['steps']} steps, {summary['trainable_parameters']:,} trainable parameters -> "
                f"{summary['adapter']}")

    def parser(self) -> argparse.ArgumentParser:
        parser = super().parser()
        parser.prog = "python -m vision_ssl.bin.diffblender train"
        return parser
