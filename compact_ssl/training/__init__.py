"""Training plumbing shared by every method: the experiment runner, the trainer factory,
non-finite guards, random-state checkpointing, resumable data loading and metric history."""

from compact_ssl.training.guards import NonFiniteLossError, NonFiniteMetricGuard, check_finite_loss
from compact_ssl.training.history import HistoryCSVLogger, MetricHistory
from compact_ssl.training.runner import ConfigDriftError, Experiment, Setup
from compact_ssl.training.state import RandomStateCheckpoint, ResumableDataLoader, ResumableShuffleSampler
from compact_ssl.training.trainer import AtomicCheckpointIO, TrainerConfig, build_trainer, last_checkpoint

__all__ = [
    "AtomicCheckpointIO", "ConfigDriftError", "Experiment", "HistoryCSVLogger", "MetricHistory", "NonFiniteLossError",
    "NonFiniteMetricGuard", "RandomStateCheckpoint", "ResumableDataLoader", "ResumableShuffleSampler", "Setup",
    "TrainerConfig", "build_trainer", "check_finite_loss", "last_checkpoint",
]
