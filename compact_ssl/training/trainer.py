"""The one trainer factory: Lightning settings from one config dataclass, atomic checkpoints,
metric history that survives resumes, random states in every checkpoint, non-finite guards."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint

from compact_ssl.config import ConfigError
from compact_ssl.training.guards import NonFiniteMetricGuard
from compact_ssl.training.history import HistoryCSVLogger, MetricHistory, tensorboard_logger
from compact_ssl.training.state import RandomStateCheckpoint


@dataclass
class TrainerConfig:
    """Lightning trainer settings shared by every training entry point.

    Method packages subclass it to add their own fields (checkpoint intervals, monitors, the
    seed where it lives in this section) or to change defaults; the YAML section is ``trainer:``.
    """

    max_epochs: int = 100
    max_steps: int = -1  #: optimizer updates (-1: use max_epochs)
    precision: str = "32-true"  #: "32-true", "16-mixed" or "bf16-mixed"
    accumulate_grad_batches: int = 1
    devices: Any = "auto"
    num_nodes: int = 1
    accelerator: str = "auto"
    strategy: str = "auto"
    log_every_n_steps: int = 50


def check_trainer_config(tcfg: TrainerConfig, key: str = "trainer") -> None:
    """Refuse trainer settings this machine cannot run, naming the override that runs them here.

    Lightning would fail only once the trainer is built, after data preparation; this check runs
    before anything is written (and in ``--check`` dry runs).

    Raises:
        ConfigError: a GPU accelerator or 16-bit mixed precision without a visible CUDA GPU.
    """
    if torch.cuda.is_available():
        return
    if str(tcfg.accelerator).lower() in ("gpu", "cuda"):
        raise ConfigError(f"{key}.accelerator is {tcfg.accelerator!r} but this machine has no CUDA GPU. To run on CPU, "
                          f"override it: --set {key}.accelerator=cpu (in a recipe: add {key}.accelerator=cpu to its "
                          "--train_args / --pretrain_args); expect it to be slow at full size")
    if str(tcfg.accelerator).lower() in ("auto", "cpu") and str(tcfg.precision).startswith("16"):
        raise ConfigError(f"{key}.precision is {tcfg.precision!r}, which needs a CUDA GPU, and this machine has none. "
                          f"To run on CPU, override it: --set {key}.precision=32-true (or bf16-mixed)")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file and renames it into place, so an interruption
    never leaves a truncated checkpoint behind."""

    def save_checkpoint(self, checkpoint: dict, path: Any, storage_options: Any = None) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        super().save_checkpoint(checkpoint, tmp, storage_options)
        os.replace(tmp, path)


def last_checkpoint(ckpt_dir: str | Path, every_n_train_steps: int = 0) -> ModelCheckpoint:
    """``last.ckpt``, rewritten at every epoch end (or every ``every_n_train_steps`` steps).

    A monitor-less top-1 under a fixed name is rewritten every time; Lightning's own
    ``save_last`` only follows the saves of another callback.
    """
    if every_n_train_steps > 0:
        return ModelCheckpoint(dirpath=ckpt_dir, filename="last", save_top_k=1, every_n_train_steps=every_n_train_steps,
                               enable_version_counter=False)
    return ModelCheckpoint(dirpath=ckpt_dir, filename="last", save_top_k=1, every_n_epochs=1,
                           enable_version_counter=False)


def build_trainer(tcfg: TrainerConfig, rundir: str | Path, checkpoints: list[ModelCheckpoint],
                  callbacks: list[Callback] | None = None, resume_step: int | None = None,
                  lr_interval: str = "epoch", **overrides: Any) -> L.Trainer:
    """A Lightning trainer for ``rundir``.

    Args:
        tcfg: trainer settings.
        rundir: the run folder: ``checkpoints/``, ``tensorboard/`` and ``csv/metrics.csv`` go there.
        checkpoints: the run's checkpoint callbacks (see :func:`last_checkpoint`).
        callbacks: further callbacks of the method.
        resume_step: global step of the checkpoint the run resumes from (purges later
            TensorBoard events of the interrupted run).
        lr_interval: ``"step"`` or ``"epoch"``: how often the learning rate is logged.
        overrides: any other ``L.Trainer`` argument (``val_check_interval``, ...).
    """
    rundir = Path(rundir)
    csv_logger = HistoryCSVLogger(rundir)
    kwargs: dict[str, Any] = dict(
        default_root_dir=str(rundir),
        max_epochs=tcfg.max_epochs if tcfg.max_steps < 0 else None,
        max_steps=tcfg.max_steps,
        precision=tcfg.precision,
        accumulate_grad_batches=tcfg.accumulate_grad_batches,
        devices=tcfg.devices,
        num_nodes=tcfg.num_nodes,
        accelerator=tcfg.accelerator,
        strategy=tcfg.strategy,
        log_every_n_steps=tcfg.log_every_n_steps,
        callbacks=[NonFiniteMetricGuard(), RandomStateCheckpoint(), MetricHistory(csv_logger),
                   LearningRateMonitor(logging_interval=lr_interval), *(callbacks or []), *checkpoints],
        logger=[tensorboard_logger(rundir, resume_step), csv_logger],
        plugins=[AtomicCheckpointIO()],
    )
    kwargs.update(overrides)
    return L.Trainer(**kwargs)
