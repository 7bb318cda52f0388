"""Metric history that survives interruptions.

Lightning's ``CSVLogger`` deletes ``metrics.csv`` when it finds one, so every resume (and every
rerun of a finished stage) lost the rows written before. :class:`HistoryCSVLogger` appends to
the existing file instead, and :class:`MetricHistory` makes a resume exact: a run resumed from a
checkpoint of global step ``S`` first moves the rows of steps ``>= S`` (logged by the interrupted
run after the checkpoint; the resumed run is about to log them again) to ``replayed.csv`` beside
the history, so ``metrics.csv`` holds each step once and nothing is lost. (Lightning logs the
metrics of the batch that takes the optimizer to step ``S`` under step ``S - 1``.)
TensorBoard gets the same effect from ``purge_step`` (see :func:`tensorboard_logger`).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import lightning as L
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from compact_ssl.io import atomic_write_text

REPLAYED = "replayed.csv"


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, minus the deletion of an existing ``metrics.csv``: the header
    of the existing file is kept, and new columns rewrite it with the union of both."""

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if path.is_file():
            with open(path, newline="") as f:
                self.metrics_keys = sorted(next(csv.reader(f), []))


class HistoryCSVLogger(CSVLogger):
    """A ``CSVLogger`` writing ``<save_dir>/<name>/metrics.csv`` that appends across runs."""

    def __init__(self, save_dir: str | Path, name: str = "csv") -> None:
        super().__init__(str(save_dir), name=name, version="")

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment

    @property
    def metrics_path(self) -> Path:
        return Path(self.log_dir) / ExperimentWriter.NAME_METRICS_FILE


def tensorboard_logger(save_dir: str | Path, resume_step: int | None = None) -> TensorBoardLogger:
    """TensorBoard logs under ``<save_dir>/tensorboard``; a run resumed at ``resume_step`` purges
    the events logged after that step by the interrupted run (TensorBoard's ``purge_step``)."""
    kwargs = {"purge_step": resume_step + 1} if resume_step is not None else {}
    return TensorBoardLogger(str(save_dir), name="tensorboard", version="", **kwargs)


def _read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def _write_rows(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


class MetricHistory(Callback):
    """Keeps ``metrics.csv`` consistent with the checkpoints (see the module docstring)."""

    def __init__(self, logger: HistoryCSVLogger) -> None:
        self.logger = logger

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if trainer.global_rank == 0:
            self.logger.save()

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        path = self.logger.metrics_path
        if trainer.global_rank != 0 or not path.is_file():
            return
        step = int(checkpoint["global_step"])
        header, rows = _read_rows(path)
        later = [r for r in rows if r.get("step") and int(r["step"]) >= step]
        if not later:
            return
        replayed = path.with_name(REPLAYED)
        old_header, old_rows = _read_rows(replayed) if replayed.is_file() else ([], [])
        _write_rows(replayed, sorted(set(old_header) | set(header)), [*old_rows, *later])
        _write_rows(path, header, [r for r in rows if not (r.get("step") and int(r["step"]) >= step)])
