"""Train a student by distillation: ``python -m audio_compress.bin.distill --config C --expdir D``.

Writes ``D/config.yaml`` (resolved config), ``D/checkpoints/`` (periodic ``step=N.ckpt``,
``best-*.ckpt`` on dev loss, ``last.ckpt``), TensorBoard logs under ``D/tensorboard``, the metric
history ``D/csv/metrics.csv`` and ``D/done.json`` once finished. Rerunning resumes from
``last.ckpt`` (``--resume auto``); a changed config is refused unless ``--resume never`` (fresh
run) or ``--resume force`` (continue, recorded). Multi-GPU: set ``trainer.devices`` (and
``trainer.num_nodes``); Lightning starts DDP itself, or picks up ranks from torchrun / SLURM
(see recipes/cmd.sh).
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint

from audio_compress.tasks.config import DistillConfig, check_distill_config
from audio_compress.tasks.datamodule import DistillDataModule
from audio_compress.tasks.distill import DistillationTask
from compact_ssl.training import Experiment, Setup


class Distillation(Experiment):
    """One distillation run in the experiment folder itself (``--seeds`` gives seed<N>/ folders)."""

    config_class = DistillConfig
    seed_dirs = False

    def check(self, config: DistillConfig, rundir: Path) -> None:
        check_distill_config(config, use_dump=bool(config.data.dump_dir))

    def setup(self, config: DistillConfig, rundir: Path) -> Setup:
        tcfg, ckpt_dir = config.trainer, rundir / "checkpoints"
        periodic = ModelCheckpoint(dirpath=ckpt_dir, filename="step={step}", auto_insert_metric_name=False,
                                   every_n_train_steps=tcfg.ckpt_every_n_steps, save_top_k=-1, save_last=True)
        best = ModelCheckpoint(dirpath=ckpt_dir, filename="best-step={step}-val_loss={val_loss:.4f}",
                               auto_insert_metric_name=False, monitor="val_loss", mode="min", save_top_k=tcfg.keep_best)
        return Setup(DistillationTask(config), DistillDataModule(config.data, seed=tcfg.seed), [periodic, best],
                     lr_interval="step",
                     trainer_kwargs={"gradient_clip_val": config.optim.grad_clip or None, "check_val_every_n_epoch": None,
                                     "val_check_interval": tcfg.val_every_n_steps, "use_distributed_sampler": False})

    def summarize(self, config: DistillConfig, setup: Setup, trainer, rundir: Path) -> dict:
        best = setup.checkpoints[1]
        return {"steps": trainer.global_step, "last_checkpoint": str(rundir / "checkpoints" / "last.ckpt"),
                "best_checkpoint": best.best_model_path or None,
                "best_val_loss": None if best.best_model_score is None else float(best.best_model_score)}

    def describe(self, seed: int, summary: dict) -> str:
        return f"Training finished after {summary['steps']} steps. Checkpoints: {Path(summary['last_checkpoint']).parent}"


main = Distillation().main

if __name__ == "__main__":
    main()
