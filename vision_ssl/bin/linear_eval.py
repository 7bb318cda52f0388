"""Linear evaluation of pretrained encoders over seeds:
``python -m vision_ssl.bin.linear_eval --config C --expdir D [--seeds 0 1 2] [--set key=value ...]``.

For each seed, loads ``D/seed<N>/checkpoints/last.ckpt`` (from ``vision_ssl.bin.pretrain``),
freezes it and trains the classifiers of the config's ``linear`` section on ``data.train_split``,
testing on ``data.test_split`` every epoch. Writes ``D/seed<N>/linear/`` (checkpoints, logs) and
``D/seed<N>/linear/result.json`` with the best top-1 over epochs (the reported figure), its
epoch, and the last epoch's top-1 / top-5 for every head (``backbone``, ``subnet``,
``ensemble``). Rerunning skips finished seeds and resumes interrupted ones.

``--baseline random_init|pixels`` probes a trivial baseline instead of the pretrained encoder
(:mod:`vision_ssl.eval.baselines`), with the same probe, data and seeds, in
``D/baselines/<kind>/seed<N>/linear/``: the method of the config freshly initialised from the
seed (``random_init``), or the standardised raw pixels (``pixels``, feature ``backbone`` only).
Where the config monitors kNN during pretraining (``trainer.knn_every_n_epochs`` > 0), the
baseline's ``result.json`` also holds the same weighted-kNN top-1 (``knn_top1``).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch

from compact_ssl.training import Experiment, Setup, TrainerConfig, last_checkpoint
from vision_ssl.config import ExperimentConfig, LinearConfig
from vision_ssl.data.datamodules import LinearDataModule
from vision_ssl.data.mixed import pretrain_datamodule
from vision_ssl.eval import BASELINES, LinearProbe, PixelEncoder, extract_features, knn_scores
from vision_ssl.methods import load_pretrained, method_class


class LinearEvaluation(Experiment):
    """A linear probe of the encoder pretrained in the seed folder; runs in ``seed<N>/linear/``."""

    config_class = ExperimentConfig
    frozen_eval_modules = True  # the frozen encoder
    seed_key = "seed"
    done_name = "result.json"
    subdir = "linear"

    def trainer_config(self, config: ExperimentConfig) -> TrainerConfig:
        return replace(config.trainer, max_epochs=config.linear.epochs, max_steps=-1,
                       precision=config.linear.precision)

    def setup(self, config: ExperimentConfig, rundir: Path) -> Setup:
        # building the pretrained model draws initial weights: keep the seeded state for the probe
        with torch.random.fork_rng(devices=[]):
            encoder = self.encoder(config, rundir)
        data = LinearDataModule(config.data, config.linear)
        probe = LinearProbe(encoder, data.num_classes, self.linear_config(config))
        return Setup(probe, data, [last_checkpoint(rundir / "checkpoints")], trainer_kwargs={"num_sanity_val_steps": 0})

    def encoder(self, config: ExperimentConfig, rundir: Path) -> torch.nn.Module:
        """The frozen encoder to probe: the one pretrained in the seed folder."""
        return load_pretrained(rundir.parent / "checkpoints" / "last.ckpt")

    def linear_config(self, config: ExperimentConfig) -> LinearConfig:
        """The probe's settings (the config's ``linear`` section)."""
        return config.linear

    def parser(self) -> argparse.ArgumentParser:
        parser = super().parser()
        parser.add_argument("--baseline", choices=BASELINES, default=None,
                            help="probe this trivial baseline instead (results in <expdir>/baselines/<kind>/)")
        return parser

    def summarize(self, config: ExperimentConfig, setup: Setup, trainer, rundir: Path) -> dict:
        probe = setup.module
        if not probe.last_accuracy:  # resumed after the last epoch had finished: evaluate once more
            trainer.validate(probe, datamodule=setup.datamodule)
        return {
            "seed": config.seed, "method": config.method, "mixco": config.mixco.enabled, "dataset": config.data.dataset,
            "epochs": config.linear.epochs, "num_classes": setup.datamodule.num_classes,
            "best_top1": {h: probe.best_top1[i].item() for i, h in enumerate(probe.heads)},
            "best_epoch": {h: int(probe.best_epoch[i]) for i, h in enumerate(probe.heads)},
            "last_top1": {h: acc[0] for h, acc in probe.last_accuracy.items()},
            "last_top5": {h: acc[1] for h, acc in probe.last_accuracy.items()},
        }

    def describe(self, seed: int, summary: dict) -> str:
        return f"seed {seed}: best top-1 {summary['best_top1']}"


class LinearBaseline(LinearEvaluation):
    """The same probe on a trivial baseline encoder (``random_init`` or ``pixels``), in
    ``<expdir>/baselines/<kind>/seed<N>/linear/``."""

    def __init__(self, kind: str) -> None:
        if kind not in BASELINES:
            raise ValueError(f"unknown baseline {kind!r}; choose from {list(BASELINES)}")
        self.kind = kind

    def rundirs(self, expdir: Path, config: ExperimentConfig, seeds: list[int] | None) -> list[tuple[int, Path]]:
        return super().rundirs(expdir / "baselines" / self.kind, config, seeds)

    def encoder(self, config: ExperimentConfig, rundir: Path) -> torch.nn.Module:
        if self.kind == "pixels":
            return PixelEncoder(config.data.image_size)
        # the method class directly: a two-stage config's cdfsl.init_from must not load trained weights
        return method_class(config)(config)

    def linear_config(self, config: ExperimentConfig) -> LinearConfig:
        # raw pixels have only the one feature (no SelfCon sub-network)
        return replace(config.linear, features=["backbone"]) if self.kind == "pixels" else config.linear

    def summarize(self, config: ExperimentConfig, setup: Setup, trainer, rundir: Path) -> dict:
        summary = {**super().summarize(config, setup, trainer, rundir), "baseline": self.kind}
        t = config.trainer
        if t.knn_every_n_epochs > 0:  # the method rows have the pretraining kNN monitor's figure
            bank_loader, test_loader, num_classes = pretrain_datamodule(config).knn_loaders()
            encoder = setup.module.encoder
            bank, bank_labels = extract_features(encoder, bank_loader)
            test, test_labels = extract_features(encoder, test_loader)
            pred = knn_scores(test, bank, bank_labels, num_classes, t.knn_k, t.knn_temperature).argmax(dim=1)
            summary["knn_top1"] = 100.0 * (pred == test_labels).float().mean().item()
        return summary

    def describe(self, seed: int, summary: dict) -> str:
        return f"{self.kind} baseline, " + super().describe(seed, summary)


def main(argv: list[str] | None = None) -> list[dict]:
    """Entry point: the pretrained encoders' probe, or with ``--baseline`` a baseline's."""
    kind = LinearEvaluation().parser().parse_args(argv).baseline
    experiment = LinearEvaluation() if kind is None else LinearBaseline(kind)
    return experiment.main(argv)


if __name__ == "__main__":
    main()
