"""Pretrain one method over one or more seeds:
``python -m vision_ssl.bin.pretrain --config C --expdir D [--seeds 0 1 2] [--set key=value ...]``.

Each seed runs in ``D/seed<N>/``: ``config.yaml`` (resolved), ``checkpoints/last.ckpt`` (every
epoch) and ``checkpoints/epoch=E.ckpt`` (every ``trainer.ckpt_every_n_epochs``), TensorBoard logs
under ``tensorboard/``, the metric history ``csv/metrics.csv`` (loss terms, lr, ``knn/top1``), and
``pretrain_done.json`` once finished. Rerunning skips finished seeds and resumes an interrupted
one from ``last.ckpt``; a changed config is refused unless ``--resume never|force``. Multi-GPU:
``trainer.devices`` / ``trainer.num_nodes`` (Lightning starts DDP itself, or picks up ranks from
torchrun / SLURM, see recipes/cmd.sh); ``data.batch_size`` is per device.
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint

from compact_ssl.training import Experiment, Setup, last_checkpoint
from vision_ssl.config import ExperimentConfig
from vision_ssl.data.mixed import pretrain_datamodule
from vision_ssl.eval import KNNMonitor
from vision_ssl.methods import build_method


class Pretraining(Experiment):
    """Self-supervised (or source-supervised) pretraining of one method, one run per seed."""

    config_class = ExperimentConfig
    seed_key = "seed"
    done_name = "pretrain_done.json"

    def setup(self, config: ExperimentConfig, rundir: Path) -> Setup:
        t, ckpt_dir = config.trainer, rundir / "checkpoints"
        data = pretrain_datamodule(config)
        callbacks = []
        if t.knn_every_n_epochs > 0:
            bank, test, num_classes = data.knn_loaders()
            callbacks.append(KNNMonitor(bank, test, num_classes, t.knn_every_n_epochs, t.knn_k, t.knn_temperature))
        checkpoints = [last_checkpoint(ckpt_dir)]
        if t.ckpt_every_n_epochs > 0:
            checkpoints.append(ModelCheckpoint(dirpath=ckpt_dir, filename="epoch={epoch}", save_top_k=-1,
                                               auto_insert_metric_name=False, every_n_epochs=t.ckpt_every_n_epochs))
        return Setup(build_method(config), data, checkpoints, callbacks, trainer_kwargs={"num_sanity_val_steps": 0})

    def summarize(self, config: ExperimentConfig, setup: Setup, trainer, rundir: Path) -> dict:
        knn = next((c for c in setup.callbacks if isinstance(c, KNNMonitor)), None)
        return {"seed": config.seed, "method": config.method, "mixco": config.mixco.enabled,
                "epochs": trainer.current_epoch, "steps": trainer.global_step,
                "checkpoint": str(rundir / "checkpoints" / "last.ckpt"), "knn_top1": knn.last_top1 if knn else None}

    def describe(self, seed: int, summary: dict) -> str:
        return f"seed {seed}: {summary['epochs']} epochs, kNN top-1 {summary['knn_top1']} -> {summary['checkpoint']}"


main = Pretraining().main

if __name__ == "__main__":
    main()
