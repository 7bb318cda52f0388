"""Linear evaluation of pretrained encoders over seeds:
``python -m vision_ssl.bin.linear_eval --config C --expdir D [--seeds 0 1 2] [--set key=value ...]``.

For each seed, loads ``D/seed<N>/checkpoints/last.ckpt`` (from ``vision_ssl.bin.pretrain``),
freezes it and trains the classifiers of the config's ``linear`` section on ``data.train_split``,
testing on ``data.test_split`` every epoch. Writes ``D/seed<N>/linear/`` (checkpoints, logs) and
``D/seed<N>/linear/result.json`` with the best top-1 over epochs (the reported figure), its
epoch, and the last epoch's top-1 / top-5 for every head (``backbone``, ``subnet``,
``ensemble``). Rerunning skips finished seeds and resumes interrupted ones.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import torch

from compact_ssl.training import Experiment, Setup, TrainerConfig, last_checkpoint
from vision_ssl.config import ExperimentConfig
from vision_ssl.data.datamodules import LinearDataModule
from vision_ssl.eval import LinearProbe
from vision_ssl.methods import load_pretrained


class LinearEvaluation(Experiment):
    """A linear probe of the encoder pretrained in the seed folder; runs in ``seed<N>/linear/``."""

    config_class = ExperimentConfig
    seed_key = "seed"
    done_name = "result.json"
    subdir = "linear"

    def trainer_config(self, config: ExperimentConfig) -> TrainerConfig:
        return replace(config.trainer, max_epochs=config.linear.epochs, max_steps=-1,
                       precision=config.linear.precision)

    def setup(self, config: ExperimentConfig, rundir: Path) -> Setup:
        # building the pretrained model draws initial weights: keep the seeded state for the probe
        with torch.random.fork_rng(devices=[]):
            encoder = load_pretrained(rundir.parent / "checkpoints" / "last.ckpt")
        data = LinearDataModule(config.data, config.linear)
        probe = LinearProbe(encoder, data.num_classes, config.linear)
        return Setup(probe, data, [last_checkpoint(rundir / "checkpoints")], trainer_kwargs={"num_sanity_val_steps": 0})

    def run(self, *args, **kwargs) -> dict:
        with warnings.catch_warnings():  # the frozen encoder is in eval mode on purpose
            warnings.filterwarnings("ignore", r"Found \d+ module\(s\) in eval mode")
            return super().run(*args, **kwargs)

    def summarize(self, config: ExperimentConfig, setup: Setup, trainer, rundir: Path) -> dict:
        probe = setup.module
        if not probe.last_accuracy:  # resumed after the last epoch had finished: evaluate once more
            trainer.validate(probe, datamodule=setup.datamodule)
        return {
            "seed": config.seed, "method": config.method, "mixco": config.mixco.enabled, "dataset": config.data.dataset,
            "epochs": config.linear.epochs,
            "best_top1": {h: probe.best_top1[i].item() for i, h in enumerate(probe.heads)},
            "best_epoch": {h: int(probe.best_epoch[i]) for i, h in enumerate(probe.heads)},
            "last_top1": {h: acc[0] for h, acc in probe.last_accuracy.items()},
            "last_top5": {h: acc[1] for h, acc in probe.last_accuracy.items()},
        }

    def describe(self, seed: int, summary: dict) -> str:
        return f"seed {seed}: best top-1 {summary['best_top1']}"


main = LinearEvaluation().main

if __name__ == "__main__":
    main()
