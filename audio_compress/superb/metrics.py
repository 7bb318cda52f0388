"""SUPERB metric keys, units and display information, and the checks every metric value passes.

Metrics are passed as a mapping from the keys in :data:`METRIC_KEYS` to floats, in the units of
the papers' tables:

* accuracies, error rates, F1 and CER in **percent** (``KS_acc=96.30``, ``ASR_wer=6.42``);
* QbE MTWV as a **fraction** (``QbE_mtwv=0.0736``), as printed in the ARMHuBERT/STaR tables.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

__all__ = [
    "METRIC_KEYS", "LOWER_IS_BETTER", "TASKS", "METRIC_TASK", "METRIC_INFO", "MetricInfo",
    "MissingMetricsError", "UnknownMetricError", "validate_metrics", "format_metric",
]

#: The 11 metric columns of the paper subset (10 tasks), in the order of the papers' tables.
METRIC_KEYS: tuple[str, ...] = (
    "PR_per", "ASR_wer", "KS_acc", "QbE_mtwv", "SID_acc", "ASV_eer", "SD_der",
    "IC_acc", "SF_f1", "SF_cer", "ER_acc",
)

#: Metrics where a smaller value is better (error rates, in percent).
LOWER_IS_BETTER: frozenset[str] = frozenset({"PR_per", "ASR_wer", "ASV_eer", "SD_der", "SF_cer"})

#: Task -> its metric keys. Slot filling is the only task with two metrics.
TASKS: dict[str, tuple[str, ...]] = {
    "PR": ("PR_per",),
    "ASR": ("ASR_wer",),
    "KS": ("KS_acc",),
    "QbE": ("QbE_mtwv",),
    "SID": ("SID_acc",),
    "ASV": ("ASV_eer",),
    "SD": ("SD_der",),
    "IC": ("IC_acc",),
    "SF": ("SF_f1", "SF_cer"),
    "ER": ("ER_acc",),
}

#: Metric key -> task name.
METRIC_TASK: dict[str, str] = {m: t for t, ms in TASKS.items() for m in ms}


class MetricInfo(NamedTuple):
    """Display information for one metric."""

    task: str
    name: str          # e.g. "PER"
    unit: str          # "%" or "" (fraction)
    lower_is_better: bool
    description: str

    @property
    def header(self) -> str:
        """Short column header with a direction arrow, e.g. ``"PR PER↓"``."""
        return f"{self.task} {self.name}{'↓' if self.lower_is_better else '↑'}"


METRIC_INFO: dict[str, MetricInfo] = {
    "PR_per": MetricInfo("PR", "PER", "%", True, "phoneme recognition, phone error rate"),
    "ASR_wer": MetricInfo("ASR", "WER", "%", True, "speech recognition, word error rate"),
    "KS_acc": MetricInfo("KS", "Acc", "%", False, "keyword spotting, accuracy"),
    "QbE_mtwv": MetricInfo("QbE", "MTWV", "", False,
                           "query-by-example spoken term detection, maximum term weighted value "
                           "(fraction, not percent)"),
    "SID_acc": MetricInfo("SID", "Acc", "%", False, "speaker identification, accuracy"),
    "ASV_eer": MetricInfo("ASV", "EER", "%", True, "speaker verification, equal error rate"),
    "SD_der": MetricInfo("SD", "DER", "%", True, "speaker diarization, diarization error rate"),
    "IC_acc": MetricInfo("IC", "Acc", "%", False, "intent classification, accuracy"),
    "SF_f1": MetricInfo("SF", "F1", "%", False, "slot filling, slot-type F1"),
    "SF_cer": MetricInfo("SF", "CER", "%", True, "slot filling, slot-value CER"),
    "ER_acc": MetricInfo("ER", "Acc", "%", False, "emotion recognition, accuracy"),
}

_ACCURACY_LIKE = frozenset(METRIC_KEYS) - LOWER_IS_BETTER - {"QbE_mtwv"}


class UnknownMetricError(KeyError):
    """A metric key that is not one of :data:`METRIC_KEYS`."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class MissingMetricsError(KeyError):
    """Metrics required for a full (non-partial) score are missing; ``.missing`` lists them."""

    def __init__(self, message: str, missing: tuple[str, ...]):
        super().__init__(message)
        self.missing = missing

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def validate_metrics(metrics: Mapping[str, float], *, where: str = "") -> dict[str, float]:
    """Check keys and values; return a plain ``{key: float}`` dict in :data:`METRIC_KEYS` order.

    Raises :class:`UnknownMetricError` for keys outside :data:`METRIC_KEYS` (listing the valid
    ones) and :class:`ValueError` for non-numeric or non-finite values, accuracies/F1 outside
    [0, 100], negative error rates, or a QbE MTWV outside [-1, 1] (a value in x100 units, such as
    7.36, was probably passed). ``where`` (e.g. a file name) prefixes the messages.
    """
    prefix = f"{where}: " if where else ""
    if not isinstance(metrics, Mapping):
        raise TypeError(f"{prefix}metrics must be a mapping of metric key -> value, "
                        f"got {type(metrics).__name__}")
    unknown = [k for k in metrics if k not in METRIC_INFO]
    if unknown:
        raise UnknownMetricError(
            f"{prefix}unknown metric key(s) {', '.join(map(repr, unknown))}; "
            f"valid keys: {', '.join(METRIC_KEYS)}")
    out: dict[str, float] = {}
    for key in METRIC_KEYS:
        if key not in metrics:
            continue
        raw = metrics[key]
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) and not hasattr(raw, "__float__"):
            raise ValueError(f"{prefix}metric {key} must be a number, got {raw!r}")
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"{prefix}metric {key} must be a number, got {raw!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"{prefix}metric {key} is not finite ({value!r})")
        if key == "QbE_mtwv" and not -1.0 <= value <= 1.0:
            raise ValueError(f"{prefix}QbE_mtwv={value} is outside [-1, 1]: give MTWV as a "
                             f"fraction (e.g. 0.0736), not in x100 units")
        if key in _ACCURACY_LIKE and not 0.0 <= value <= 100.0:
            raise ValueError(f"{prefix}metric {key}={value} is outside [0, 100] (percent)")
        if key in LOWER_IS_BETTER and value < 0.0:
            raise ValueError(f"{prefix}metric {key}={value} is negative")
        out[key] = value
    return out


def format_metric(key: str, value: float | None) -> str:
    """Table formatting: QbE MTWV with 4 decimals, percentages with 2 (tiny values such as
    FBANK's SID 8.5e-4 in 2 significant digits); ``None`` -> ``"–"``."""
    if value is None:
        return "–"
    if key == "QbE_mtwv":
        return f"{value:.4f}"
    if value != 0 and abs(value) < 0.01:
        return f"{value:.2g}"
    return f"{value:.2f}"
