"""Train one method over several seeds:
``python -m audio_cls.bin.train --config C --expdir D --seeds 1 2 3 [--set key=value ...]``.

Each seed runs in ``D/seed<N>/``: ``config.yaml`` (resolved), ``checkpoints/best.ckpt`` (paper
protocol: best test Score with Se above the gate), ``checkpoints/last.ckpt`` (every epoch),
TensorBoard logs under ``tensorboard/`` and a CSV log under ``csv/``, and ``done.json`` once
finished. Re-running skips finished seeds and resumes an interrupted one from ``last.ckpt``.
Missing feature caches are built first. Multi-GPU: ``trainer.devices`` / ``trainer.num_nodes``
(Lightning starts DDP itself, or picks up ranks from torchrun / SLURM, see recipes/cmd.sh).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from audio_cls.data.manifest import class_counts, read_manifest
from audio_cls.tasks.config import IcbhiConfig, load_config, save_config
from audio_cls.tasks.datamodule import IcbhiDataModule
from audio_cls.tasks.icbhi import IcbhiTask
from compact_ssl.training import AtomicCheckpointIO


def build_trainer(config: IcbhiConfig, expdir: Path) -> L.Trainer:
    """Trainer that evaluates on the test set every epoch and keeps ``best.ckpt`` and ``last.ckpt``."""
    tcfg = config.trainer
    best = ModelCheckpoint(
        dirpath=expdir / "checkpoints", filename="best", monitor="val_selection", mode="max", save_top_k=1,
        auto_insert_metric_name=False, enable_version_counter=False,
    )
    # a second callback without a monitor rewrites last.ckpt after every epoch (Lightning's own
    # save_last only writes when the monitored checkpoint was saved in the same step)
    last = ModelCheckpoint(dirpath=expdir / "checkpoints", filename="last", save_top_k=1,
                           enable_version_counter=False)
    return L.Trainer(
        default_root_dir=str(expdir),
        max_epochs=tcfg.max_epochs,
        precision=tcfg.precision,
        devices=tcfg.devices,
        num_nodes=tcfg.num_nodes,
        accelerator=tcfg.accelerator,
        strategy=tcfg.strategy,
        log_every_n_steps=tcfg.log_every_n_steps,
        check_val_every_n_epoch=1,
        num_sanity_val_steps=0,
        callbacks=[best, last, LearningRateMonitor(logging_interval="epoch")],
        logger=[TensorBoardLogger(str(expdir), name="tensorboard", version=""),
                CSVLogger(str(expdir), name="csv", version="")],
        plugins=[AtomicCheckpointIO()],
    )


def train(config: IcbhiConfig, expdir: str | Path, resume: bool = True) -> dict:
    """Train (or resume, or skip when finished) one seed; returns the contents of ``done.json``."""
    expdir = Path(expdir)
    done = expdir / "done.json"
    if done.is_file():
        print(f"{expdir}: already finished; skipping (delete {done} to retrain)")
        return json.loads(done.read_text())
    expdir.mkdir(parents=True, exist_ok=True)
    save_config(config, expdir / "config.yaml")
    L.seed_everything(config.seed, workers=True)
    counts = class_counts(read_manifest(config.data.train), config.data.num_classes)
    task = IcbhiTask(config, class_counts=counts)
    trainer = build_trainer(config, expdir)
    last = expdir / "checkpoints" / "last.ckpt"
    ckpt_path = str(last) if resume and last.is_file() else None
    if ckpt_path:
        print(f"Resuming from {ckpt_path}")
    trainer.fit(task, datamodule=IcbhiDataModule(config), ckpt_path=ckpt_path)
    callback = trainer.checkpoint_callback
    best_score = callback.best_model_score
    summary = {
        "seed": config.seed, "method": config.method, "epochs": trainer.current_epoch,
        "best_checkpoint": callback.best_model_path,
        "best_selection_score": None if best_score is None else float(best_score),
        "last_checkpoint": str(last),
    }
    if trainer.global_rank == 0:
        tmp = done.with_name(done.name + ".tmp")
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
        os.replace(tmp, done)
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="training YAML (egs/*/*/conf/*.yaml)")
    parser.add_argument("--expdir", required=True, help="experiment folder of this method (seeds go below it)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="seeds to train, one run each (default: the config's seed)")
    parser.add_argument("--resume", default="true", choices=["true", "false"], help="continue from last.ckpt")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config entry, e.g. --set trainer.max_epochs=2 (repeatable)")
    args = parser.parse_args(argv)
    config = load_config(args.config, args.overrides)
    for seed in args.seeds or [config.seed]:
        summary = train(replace(config, seed=seed), Path(args.expdir) / f"seed{seed}", resume=args.resume == "true")
        print(f"seed {seed}: best selection score {summary['best_selection_score']} -> {summary['best_checkpoint']}")


if __name__ == "__main__":
    main()
