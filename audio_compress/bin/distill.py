"""Train a student by distillation: ``python -m audio_compress.bin.distill --config C --expdir D``.

Writes ``D/config.yaml`` (resolved config), ``D/checkpoints/`` (periodic ``step=N.ckpt``,
``best-*.ckpt`` on dev loss, ``last.ckpt``), TensorBoard logs under ``D/tensorboard`` and a CSV
log under ``D/csv``. ``--resume true`` continues from ``D/checkpoints/last.ckpt`` when present.
Multi-GPU: set ``trainer.devices`` (and ``trainer.num_nodes``); Lightning starts DDP itself, or
picks up ranks from torchrun / SLURM (see recipes/cmd.sh).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import lightning as L
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from audio_compress.tasks.config import DistillConfig, load_config, save_config
from audio_compress.tasks.datamodule import DistillDataModule
from audio_compress.tasks.distill import DistillationTask


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file and renames it into place, so an interruption
    never leaves a truncated checkpoint behind."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        super().save_checkpoint(checkpoint, tmp, storage_options)
        os.replace(tmp, path)


def build_trainer(config: DistillConfig, expdir: Path, extra_callbacks: list | None = None) -> L.Trainer:
    """Lightning trainer with periodic, best-on-dev and last checkpoints and TB + CSV loggers."""
    tcfg = config.trainer
    ckpt_dir = expdir / "checkpoints"
    periodic = ModelCheckpoint(
        dirpath=ckpt_dir, filename="step={step}", auto_insert_metric_name=False,
        every_n_train_steps=tcfg.ckpt_every_n_steps, save_top_k=-1, save_last=True,
    )
    best = ModelCheckpoint(
        dirpath=ckpt_dir, filename="best-step={step}-val_loss={val_loss:.4f}", auto_insert_metric_name=False,
        monitor="val_loss", mode="min", save_top_k=tcfg.keep_best,
    )
    return L.Trainer(
        default_root_dir=str(expdir),
        max_steps=tcfg.max_steps,
        max_epochs=tcfg.max_epochs if tcfg.max_steps < 0 else None,
        precision=tcfg.precision,
        accumulate_grad_batches=tcfg.accumulate_grad_batches,
        gradient_clip_val=config.optim.grad_clip or None,
        devices=tcfg.devices,
        num_nodes=tcfg.num_nodes,
        accelerator=tcfg.accelerator,
        strategy=tcfg.strategy,
        log_every_n_steps=tcfg.log_every_n_steps,
        val_check_interval=tcfg.val_every_n_steps,
        check_val_every_n_epoch=None,
        use_distributed_sampler=False,
        callbacks=[periodic, best, LearningRateMonitor(logging_interval="step"), *(extra_callbacks or [])],
        logger=[TensorBoardLogger(str(expdir), name="tensorboard", version=""), CSVLogger(str(expdir), name="csv", version="")],
        plugins=[AtomicCheckpointIO()],
    )


def run(config: DistillConfig, expdir: str | Path, resume: bool = True, extra_callbacks: list | None = None) -> Path:
    """Train (or resume) and return the path of the last checkpoint."""
    expdir = Path(expdir)
    expdir.mkdir(parents=True, exist_ok=True)
    save_config(config, expdir / "config.yaml")
    L.seed_everything(config.trainer.seed, workers=True)
    task = DistillationTask(config)
    data = DistillDataModule(config.data, seed=config.trainer.seed)
    trainer = build_trainer(config, expdir, extra_callbacks)
    last = expdir / "checkpoints" / "last.ckpt"
    ckpt_path = str(last) if resume and last.is_file() else None
    if ckpt_path:
        print(f"Resuming from {ckpt_path}")
    trainer.fit(task, datamodule=data, ckpt_path=ckpt_path)
    return last


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="distillation YAML (egs/*/*/conf/*.yaml)")
    parser.add_argument("--expdir", required=True, help="experiment folder")
    parser.add_argument("--resume", default="true", choices=["true", "false"], help="continue from last.ckpt")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config entry, e.g. --set trainer.max_steps=100 (repeatable)")
    args = parser.parse_args(argv)
    config = load_config(args.config, args.overrides)
    last = run(config, args.expdir, resume=args.resume == "true")
    print(f"Training finished. Checkpoints: {last.parent}")


if __name__ == "__main__":
    main()
