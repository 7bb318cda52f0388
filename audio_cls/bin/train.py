"""Train one method over several seeds:
``python -m audio_cls.bin.train --config C --expdir D --seeds 1 2 3 [--set key=value ...]``.

Each seed runs in ``D/seed<N>/``: ``config.yaml`` (resolved), ``checkpoints/best.ckpt`` (the best
Score with Se above the gate: on the test set under the paper protocol, the default; on the
held-out training patients under the clean protocol, ``data.val_fraction > 0``, which then trains
on the other patients only), ``checkpoints/last.ckpt`` (every epoch),
TensorBoard logs under ``tensorboard/``, the metric history ``csv/metrics.csv``, and ``done.json``
once finished. Rerunning skips finished seeds and resumes an interrupted one from ``last.ckpt``;
a changed config is refused unless ``--resume never|force``. Multi-GPU: ``trainer.devices`` /
``trainer.num_nodes`` (Lightning starts DDP itself, or picks up ranks from torchrun / SLURM, see
recipes/cmd.sh).
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint

from audio_cls.data.manifest import class_counts, read_manifest
from audio_cls.tasks.config import IcbhiConfig
from audio_cls.tasks.datamodule import IcbhiDataModule, split_training_cycles
from audio_cls.tasks.icbhi import IcbhiTask
from compact_ssl.training import Experiment, Setup, last_checkpoint


class IcbhiTraining(Experiment):
    """One ICBHI training run per seed, evaluated every epoch on the set the best epoch is chosen on."""

    config_class = IcbhiConfig
    seed_key = "seed"

    def setup(self, config: IcbhiConfig, rundir: Path) -> Setup:
        ckpt_dir = rundir / "checkpoints"
        best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val_selection", mode="max", save_top_k=1,
                               auto_insert_metric_name=False, enable_version_counter=False)
        records = read_manifest(config.data.train)
        # class weights come from the cycles actually trained on (without the held-out patients)
        trained = [records[i] for i in split_training_cycles(config, records)[0]]
        counts = class_counts(trained, config.data.num_classes)
        return Setup(IcbhiTask(config, class_counts=counts), IcbhiDataModule(config), [best, last_checkpoint(ckpt_dir)],
                     trainer_kwargs={"check_val_every_n_epoch": 1, "num_sanity_val_steps": 0})

    def summarize(self, config: IcbhiConfig, setup: Setup, trainer, rundir: Path) -> dict:
        best = setup.checkpoints[0]
        return {"seed": config.seed, "method": config.method, "epochs": trainer.current_epoch,
                "selected_on": config.data.selected_on, "best_checkpoint": best.best_model_path,
                "best_selection_score": None if best.best_model_score is None else float(best.best_model_score),
                "last_checkpoint": str(rundir / "checkpoints" / "last.ckpt")}

    def describe(self, seed: int, summary: dict) -> str:
        return f"seed {seed}: best selection score {summary['best_selection_score']} -> {summary['best_checkpoint']}"


main = IcbhiTraining().main

if __name__ == "__main__":
    main()
