"""The Lightning trainer shared by the training entry points."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from compact_ssl.training import AtomicCheckpointIO
from vision_ssl.config import TrainerConfig


def make_trainer(tcfg: TrainerConfig, expdir: Path, max_epochs: int, precision: str, periodic_every: int = 0,
                 callbacks: list | None = None, max_steps: int = -1, last_every_n_steps: int = 0,
                 gradient_clip_val: float | None = None) -> L.Trainer:
    """Trainer writing ``checkpoints/last.ckpt`` every epoch (and every ``last_every_n_steps``
    steps when > 0; atomically), ``epoch=N.ckpt`` every ``periodic_every`` epochs (0: none), and
    TensorBoard + CSV logs under ``expdir``. ``tcfg`` is any config with ``devices``,
    ``num_nodes``, ``accelerator``, ``strategy`` and ``log_every_n_steps``."""
    ckpt_dir = expdir / "checkpoints"
    # a monitor-less top-1 under a fixed name is rewritten every epoch (save_last alone only
    # follows other saves)
    checkpoints = [ModelCheckpoint(dirpath=ckpt_dir, filename="last", save_top_k=1, every_n_epochs=1,
                                   enable_version_counter=False)]
    if last_every_n_steps > 0:
        checkpoints.append(ModelCheckpoint(dirpath=ckpt_dir, filename="last", save_top_k=1,
                                           every_n_train_steps=last_every_n_steps, enable_version_counter=False))
    if periodic_every > 0:
        checkpoints.append(ModelCheckpoint(dirpath=ckpt_dir, filename="epoch={epoch}", auto_insert_metric_name=False,
                                           every_n_epochs=periodic_every, save_top_k=-1))
    return L.Trainer(
        default_root_dir=str(expdir),
        max_epochs=max_epochs,
        max_steps=max_steps,
        gradient_clip_val=gradient_clip_val,
        precision=precision,
        devices=tcfg.devices,
        num_nodes=tcfg.num_nodes,
        accelerator=tcfg.accelerator,
        strategy=tcfg.strategy,
        log_every_n_steps=tcfg.log_every_n_steps,
        num_sanity_val_steps=0,
        callbacks=[*checkpoints, LearningRateMonitor(logging_interval="epoch"), *(callbacks or [])],
        logger=[TensorBoardLogger(str(expdir), name="tensorboard", version=""),
                CSVLogger(str(expdir), name="csv", version="")],
        plugins=[AtomicCheckpointIO()],
    )
