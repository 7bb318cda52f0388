"""Pretrain one method over one or more seeds:
``python -m vision_ssl.bin.pretrain --config C --expdir D [--seeds 0 1 2] [--set key=value ...]``.

Each seed runs in ``D/seed<N>/``: ``config.yaml`` (resolved), ``checkpoints/last.ckpt`` (every
epoch) and ``checkpoints/epoch=E.ckpt`` (every ``trainer.ckpt_every_n_epochs``), TensorBoard logs
under ``tensorboard/``, a CSV log under ``csv/`` (loss terms, lr, ``knn/top1``), and
``pretrain_done.json`` once finished. Re-running skips finished seeds and resumes an interrupted
one from ``last.ckpt``. Multi-GPU: ``trainer.devices`` / ``trainer.num_nodes`` (Lightning starts
DDP itself, or picks up ranks from torchrun / SLURM, see recipes/cmd.sh); ``data.batch_size`` is
per device.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import lightning as L

from vision_ssl.bin.common import make_trainer
from vision_ssl.io import write_json
from vision_ssl.cdfsl_datamodule import pretrain_datamodule
from vision_ssl.config import ExperimentConfig, load_config, save_config
from vision_ssl.eval import KNNMonitor
from vision_ssl.methods import build_method


def pretrain(config: ExperimentConfig, expdir: str | Path, resume: bool = True,
             extra_callbacks: list | None = None) -> dict:
    """Pretrain (or resume, or skip when finished) one seed; returns ``pretrain_done.json``."""
    expdir = Path(expdir)
    done = expdir / "pretrain_done.json"
    if done.is_file():
        print(f"{expdir}: pretraining already finished; skipping (delete {done} to retrain)")
        return json.loads(done.read_text())
    expdir.mkdir(parents=True, exist_ok=True)
    save_config(config, expdir / "config.yaml")
    L.seed_everything(config.seed, workers=True)
    model = build_method(config)
    data = pretrain_datamodule(config)
    t = config.trainer
    knn = None
    if t.knn_every_n_epochs > 0:
        bank, test, num_classes = data.knn_loaders()
        knn = KNNMonitor(bank, test, num_classes, t.knn_every_n_epochs, t.knn_k, t.knn_temperature)
    callbacks = [*([knn] if knn else []), *(extra_callbacks or [])]
    trainer = make_trainer(t, expdir, t.max_epochs, t.precision, t.ckpt_every_n_epochs, callbacks)
    last = expdir / "checkpoints" / "last.ckpt"
    ckpt_path = str(last) if resume and last.is_file() else None
    if ckpt_path:
        print(f"Resuming from {ckpt_path}")
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
    summary = {"seed": config.seed, "method": config.method, "mixco": config.mixco.enabled,
               "epochs": trainer.current_epoch, "steps": trainer.global_step, "checkpoint": str(last),
               "knn_top1": knn.last_top1 if knn else None}
    if trainer.global_rank == 0:
        write_json(done, summary)
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="experiment YAML (egs/*/*/conf/*.yaml)")
    parser.add_argument("--expdir", required=True, help="experiment folder (seeds go below it)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds (default: the config's seed)")
    parser.add_argument("--resume", default="true", choices=["true", "false"], help="continue from last.ckpt")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config entry, e.g. --set trainer.max_epochs=2 (repeatable)")
    args = parser.parse_args(argv)
    config = load_config(args.config, args.overrides)
    for seed in args.seeds or [config.seed]:
        seed_dir = Path(args.expdir) / f"seed{seed}"
        summary = pretrain(replace(config, seed=seed), seed_dir, resume=args.resume == "true")
        print(f"seed {seed}: {summary['epochs']} epochs, kNN top-1 {summary['knn_top1']} -> {summary['checkpoint']}")


if __name__ == "__main__":
    main()
