"""SUPERB aggregate scores: the papers' "overall score" and the leaderboard's 1000-point score.

Pure functions, no I/O. Metrics are passed as a mapping from the keys in :data:`METRIC_KEYS`
to floats, in the units of the papers' tables:

* accuracies, error rates, F1 and CER in **percent** (``KS_acc=96.30``, ``ASR_wer=6.42``);
* QbE MTWV as a **fraction** (``QbE_mtwv=0.0736``), as printed in the ARMHuBERT/STaR tables.

Two aggregates are implemented (see ``shared/reference/s3prl-recipes.md`` section 2.3):

:func:`overall_score`
    The "Overall" column of the ARMHuBERT (Interspeech 2023) and STaR (ICASSP 2024) tables: the
    unweighted mean of the 11 paper-subset values after mapping lower-is-better metrics to
    ``100 - x`` and QbE MTWV to ``100 * x``. SF counts twice (F1 and CER). It reproduces every
    printed row of both tables (HuBERT Base 80.8, STaRHuBERT-L 79.8, ARMHuBERT 78.1, ...).

:func:`superb_score`
    The SUPERB leaderboard score (STaR's "General." column, 0-1000): every metric is linearly
    interpolated between the leaderboard's FBANK (0) and SOTA (1000) reference points, without
    clipping, averaged within a task (SF: F1 and CER), then over the 10 tasks. It reproduces STaR's
    column to within 2 points (HuBERT Base 941, STaRHuBERT 887, STaRHuBERT-L 896).

Both return a :class:`Score`. A missing metric raises :class:`MissingMetricsError` naming it,
unless ``partial=True``, in which case the mean over the available metrics is returned and
labelled as partial.

:data:`PUBLISHED` holds the per-task rows of the papers' tables (see :class:`PublishedModel`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = [
    "METRIC_KEYS", "LOWER_IS_BETTER", "TASKS", "METRIC_TASK", "METRIC_INFO", "MetricInfo",
    "ReferencePoint", "REFERENCE_POINTS", "REFERENCE_POINTS_SOURCE",
    "Score", "MissingMetricsError", "UnknownMetricError",
    "validate_metrics", "overall_values", "overall_score", "superb_metric_scores",
    "superb_task_scores", "superb_score", "PublishedModel", "PUBLISHED", "SOURCES",
    "get_published", "format_metric",
]

# --------------------------------------------------------------------------------------------
# Metric keys, units and tasks
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Score result type
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Score:
    """An aggregate score.

    ``kind`` is ``"overall"`` (papers' mean, ~0-100) or ``"superb"`` (leaderboard, 0-1000).
    ``partial`` is True when some of the metrics were missing (listed in ``missing``) and the
    value is the mean over the available ones only, which is **not comparable** to full scores.
    ``used`` lists the metric keys that went into the value.
    """

    value: float
    partial: bool
    missing: tuple[str, ...]
    kind: str
    used: tuple[str, ...] = field(default=(), compare=False)

    def __float__(self) -> float:
        return float(self.value)

    @property
    def decimals(self) -> int:
        return 0 if self.kind == "superb" else 1

    @property
    def value_str(self) -> str:
        return f"{self.value:.{self.decimals}f}"

    @property
    def coverage(self) -> str:
        """``"7/11 metrics"`` (overall) or ``"6/10 tasks"`` (superb; a task counts when at least
        one of its metrics is present)."""
        if self.kind == "superb":
            tasks = {METRIC_TASK[m] for m in self.used}
            return f"{len(tasks)}/{len(TASKS)} tasks"
        return f"{len(self.used)}/{len(METRIC_KEYS)} metrics"

    @property
    def label(self) -> str:
        """``"79.8"``, ``"941"``, or ``"81.2 (partial: 7/11 metrics, missing ASR_wer, ...)"``."""
        if not self.partial:
            return self.value_str
        return f"{self.value_str} (partial: {self.coverage}, missing {', '.join(self.missing)})"

    @property
    def short_label(self) -> str:
        """Like :attr:`label` without the list of missing keys: ``"81.2 (partial 7/11 metrics)"``."""
        return self.value_str if not self.partial else f"{self.value_str} (partial {self.coverage})"

    def to_dict(self) -> dict:
        return {"value": self.value, "partial": self.partial, "missing": list(self.missing),
                "used": list(self.used), "kind": self.kind, "label": self.label}

    def __str__(self) -> str:
        return self.label


def _available(metrics: Mapping[str, float], partial: bool, kind: str
               ) -> tuple[dict[str, float], tuple[str, ...]]:
    values = validate_metrics(metrics)
    missing = tuple(k for k in METRIC_KEYS if k not in values)
    if missing and not partial:
        raise MissingMetricsError(
            f"{kind} score needs all {len(METRIC_KEYS)} metrics; missing {', '.join(missing)} "
            f"(tasks {', '.join(dict.fromkeys(METRIC_TASK[m] for m in missing))}); "
            f"pass partial=True for a partial score", missing)
    if not values:
        raise MissingMetricsError(f"no metrics given for the {kind} score "
                                  f"(expected keys: {', '.join(METRIC_KEYS)})", missing)
    return values, missing


# --------------------------------------------------------------------------------------------
# (B) The papers' overall score
# --------------------------------------------------------------------------------------------

def overall_values(metrics: Mapping[str, float]) -> dict[str, float]:
    """Per-metric values as they enter :func:`overall_score` (higher is better, ~0-100):
    ``100 - x`` for error rates, ``100 * x`` for QbE MTWV, accuracies and F1 unchanged."""
    out = {}
    for key, x in validate_metrics(metrics).items():
        if key in LOWER_IS_BETTER:
            out[key] = 100.0 - x
        elif key == "QbE_mtwv":
            out[key] = 100.0 * x
        else:
            out[key] = x
    return out


def overall_score(metrics: Mapping[str, float], partial: bool = False) -> Score:
    """The ARMHuBERT/STaR "Overall" score: the mean of the 11 converted values
    (:func:`overall_values`). With ``partial=True`` missing metrics are skipped and the result is
    flagged partial; otherwise they raise :class:`MissingMetricsError` (a ``KeyError``)."""
    _, missing = _available(metrics, partial, "overall")
    vals = overall_values(metrics)
    value = sum(vals.values()) / len(vals)
    return Score(value, bool(missing), missing, "overall", tuple(vals))


# --------------------------------------------------------------------------------------------
# (A) The leaderboard's 1000-point SUPERB score
# --------------------------------------------------------------------------------------------

class ReferencePoint(NamedTuple):
    """Leaderboard baseline (score 0) and top line (score 1000) for one metric, in the units of
    :data:`METRIC_KEYS` (QbE MTWV as a fraction)."""

    fbank: float
    sota: float


#: The SUPERB leaderboard's reference points (public set), FBANK -> SOTA, copied as numbers from
#: the leaderboard's reference table (see s3prl-recipes.md 2.3). The leaderboard stores QbE in
#: x100 units (0.58 -> 7.36); here it is a fraction like the other QbE values. Note the FBANK
#: points for KS, IC, SID, ER and SD are re-run FBANK numbers and differ from the FBANK row
#: printed in the SUPERB/ARMHuBERT/STaR tables (see ``PUBLISHED["FBANK"]``).
REFERENCE_POINTS: dict[str, ReferencePoint] = {
    "PR_per": ReferencePoint(82.01, 3.53),
    "ASR_wer": ReferencePoint(23.18, 3.62),
    "KS_acc": ReferencePoint(41.3826674, 96.66),
    "QbE_mtwv": ReferencePoint(0.0058, 0.0736),
    "SID_acc": ReferencePoint(20.058174, 90.3),
    "ASV_eer": ReferencePoint(9.56, 5.11),
    "SD_der": ReferencePoint(10.05, 5.62),
    "IC_acc": ReferencePoint(9.649354219, 98.76),
    "SF_f1": ReferencePoint(69.64, 89.81),
    "SF_cer": ReferencePoint(52.94, 21.76),
    "ER_acc": ReferencePoint(48.23672168, 67.62),
}

REFERENCE_POINTS_SOURCE = (
    "SUPERB leaderboard reference points (public set, paper subset), FBANK = 0 and SOTA = 1000, "
    "as listed in shared/reference/s3prl-recipes.md section 2.3")


def superb_metric_scores(metrics: Mapping[str, float]) -> dict[str, float]:
    """Per-metric leaderboard scores ``1000 * (x - FBANK) / (SOTA - FBANK)``, not clipped."""
    out = {}
    for key, x in validate_metrics(metrics).items():
        ref = REFERENCE_POINTS[key]
        out[key] = 1000.0 * (x - ref.fbank) / (ref.sota - ref.fbank)
    return out


def superb_task_scores(metrics: Mapping[str, float]) -> dict[str, float]:
    """Per-task leaderboard scores: the mean of the available metric scores of each task."""
    per_metric = superb_metric_scores(metrics)
    out = {}
    for task, keys in TASKS.items():
        got = [per_metric[k] for k in keys if k in per_metric]
        if got:
            out[task] = sum(got) / len(got)
    return out


def superb_score(metrics: Mapping[str, float], partial: bool = False) -> Score:
    """The SUPERB leaderboard score (0 = FBANK, 1000 = SOTA): per-metric linear interpolation
    (:data:`REFERENCE_POINTS`, no clipping), mean within each task (SF: F1 and CER), mean over
    the 10 tasks. With ``partial=True`` missing metrics/tasks are skipped (a task with one of its
    two SF metrics uses that one) and the result is flagged partial; otherwise they raise
    :class:`MissingMetricsError` (a ``KeyError``)."""
    values, missing = _available(metrics, partial, "SUPERB")
    tasks = superb_task_scores(values)
    value = sum(tasks.values()) / len(tasks)
    return Score(value, bool(missing), missing, "superb", tuple(values))


# --------------------------------------------------------------------------------------------
# Published rows
# --------------------------------------------------------------------------------------------

#: Short source ids -> description.
SOURCES: dict[str, str] = {
    "ARM": "ARMHuBERT paper table (Jang*, Kim* et al., Interspeech 2023, arXiv 2305.11685), "
           "as in sungnyun/ARMHuBERT assets/result.png; shared/reference/speech.md section 2.6",
    "STaR": "STaR paper table (Jang, Kim, Kim, ICASSP 2024, arXiv 2312.09040), "
            "as in assets/result_star.png; shared/reference/speech.md section 1.6",
    "ARM+STaR": "identical rows in the ARMHuBERT and STaR tables "
                "(shared/reference/speech.md sections 2.6 and 1.6)",
}


@dataclass(frozen=True)
class PublishedModel(Mapping):
    """One published row: a read-only mapping of the 11 metrics (so it can be passed straight
    to :func:`overall_score` / :func:`superb_score`) plus metadata.

    ``printed_overall`` / ``printed_superb`` are the aggregate values printed in the source table
    (``None`` where that table has no such column).
    """

    name: str
    metrics: Mapping[str, float]
    params_m: float | None
    source: str
    pretrain_hours: int | None = None
    printed_overall: float | None = None
    printed_superb: float | None = None
    note: str = ""

    def __getitem__(self, key: str) -> float:
        return self.metrics[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.metrics)

    def __len__(self) -> int:
        return len(self.metrics)

    def __hash__(self) -> int:
        return hash(self.name)

    def as_dict(self) -> dict[str, float | None]:
        """The 11 metrics plus ``params_M``."""
        return {**self.metrics, "params_M": self.params_m}

    def to_json(self) -> dict:
        return {"name": self.name, "metrics": dict(self.metrics), "params_M": self.params_m,
                "pretrain_hours": self.pretrain_hours, "source": self.source,
                "source_text": SOURCES.get(self.source, self.source),
                "printed_overall": self.printed_overall, "printed_superb": self.printed_superb,
                "note": self.note}


def _row(name: str, params: float | None, source: str, values: tuple[float, ...], *,
         hours: int | None = 960, overall: float | None = None, superb: float | None = None,
         note: str = "") -> PublishedModel:
    assert len(values) == len(METRIC_KEYS), name
    metrics = dict(zip(METRIC_KEYS, map(float, values)))
    validate_metrics(metrics, where=name)
    return PublishedModel(name, metrics, params, source, hours, overall, superb, note)


# Values in METRIC_KEYS order:
#        PR_per ASR_wer KS_acc QbE_mtwv SID_acc ASV_eer SD_der IC_acc SF_f1 SF_cer ER_acc
_ROWS = [
    _row("SOTA", None, "STaR",
         (3.53, 3.62, 96.66, 0.0736, 90.33, 5.11, 5.62, 98.76, 89.81, 21.76, 67.62),
         hours=None, overall=82.8, superb=1000,
         note="leaderboard top line as printed in STaR (SID 90.33; the leaderboard reference "
              "point is 90.3)"),
    _row("FBANK", 0.0, "ARM+STaR",
         (82.01, 23.18, 8.63, 0.0058, 8.5e-4, 9.56, 10.55, 9.1, 69.64, 52.94, 35.39),
         hours=None, overall=40.5, superb=0,
         note="SUPERB-paper FBANK row; ARMHuBERT prints overall 40.5 (formula 40.46), STaR prints "
              "46.5 (typo). Not the leaderboard FBANK reference points (KS, IC, SID, ER, SD "
              "differ), so its recomputed SUPERB score is not 0"),
    _row("HuBERT Base", 94.70, "ARM+STaR",
         (5.41, 6.42, 96.30, 0.0736, 81.42, 5.11, 5.88, 98.34, 88.53, 25.20, 64.92),
         overall=80.8, superb=941),
    _row("wavLM Base", 94.70, "ARM",
         (4.84, 6.21, 96.79, 0.0870, 84.51, 4.69, 4.55, 98.63, 89.38, 22.86, 65.94),
         overall=81.9),
    _row("LightHuBERT a_Small", 27.00, "ARM+STaR",
         (6.60, 8.33, 96.07, 0.0764, 69.70, 5.42, 5.85, 98.23, 87.58, 26.90, 64.12),
         overall=79.1, superb=900),
    _row("FitW2V2", 31.63, "ARM",
         (12.22, 11.44, 96.04, 0.0475, 64.71, 6.65, 6.44, 93.38, 86.65, 29.40, 62.35),
         overall=76.5),
    _row("3-L One-Pred", 30.58, "ARM",
         (13.34, 12.23, 96.69, 0.0489, 75.71, 6.48, 6.56, 94.15, 82.89, 34.65, 63.95),
         overall=76.8),
    _row("12-L Half-L2L", 26.87, "ARM",
         (10.67, 10.96, 97.24, 0.0604, 69.52, 6.13, 6.81, 96.97, 86.11, 30.93, 63.24),
         overall=77.6),
    _row("MaskHuBERT", 26.64, "ARM",
         (7.30, 9.77, 96.36, 0.0664, 62.83, 5.38, 6.79, 97.05, 87.31, 27.10, 62.37),
         overall=77.8),
    _row("ARMHuBERT", 26.45, "ARM",
         (7.72, 9.96, 96.88, 0.0635, 65.03, 5.68, 7.10, 97.07, 87.59, 26.06, 62.86),
         overall=78.1),
    _row("DistilHuBERT", 23.49, "ARM",
         (16.27, 13.37, 95.98, 0.0511, 73.54, 8.55, 6.19, 94.99, 82.57, 35.59, 63.02),
         overall=75.9),
    _row("FitHuBERT", 22.49, "ARM",
         (13.32, 12.09, 96.27, 0.0489, 55.71, 8.00, 6.84, 91.25, 84.06, 32.46, 59.82),
         overall=74.5),
    _row("ARMHuBERT-S", 22.39, "ARM+STaR",
         (8.63, 10.82, 96.82, 0.0720, 63.76, 5.58, 7.01, 97.02, 86.34, 29.02, 62.96),
         overall=77.5, superb=828),
    _row("ARMwavLM-S", 22.39, "ARM",
         (7.42, 10.03, 97.01, 0.0741, 71.29, 5.99, 7.11, 97.76, 87.41, 26.97, 64.54),
         overall=78.9),
    _row("DPHuBERT", 23.59, "STaR",
         (9.67, 10.47, 96.36, 0.0693, 76.83, 5.84, 5.92, 97.92, 86.86, 28.26, 63.16),
         overall=78.9, superb=866),
    _row("STaRHuBERT", 22.31, "STaR",
         (8.16, 9.35, 96.27, 0.0688, 77.58, 5.39, 6.05, 97.55, 87.94, 25.31, 63.01),
         overall=79.5, superb=887),
    _row("STaRHuBERT-L", 26.63, "STaR",
         (7.97, 8.91, 96.56, 0.0677, 78.66, 5.45, 5.83, 97.50, 88.01, 25.36, 63.48),
         overall=79.8, superb=896),
    # 100 h of pre-training data
    _row("FitW2V2 (100h)", 22.49, "ARM",
         (16.50, 14.77, 94.68, 0.0380, 51.65, 7.43, 6.94, 90.03, 81.95, 34.74, 62.87),
         hours=100, overall=73.1),
    _row("FitHuBERT (100h)", 22.49, "ARM",
         (14.05, 12.66, 96.23, 0.0579, 54.24, 7.88, 7.19, 94.20, 83.41, 34.00, 61.67),
         hours=100, overall=74.5),
    _row("ARMHuBERT-S (100h)", 22.39, "ARM+STaR",
         (9.17, 11.83, 96.01, 0.0569, 66.48, 5.92, 6.23, 95.97, 83.89, 33.29, 63.29),
         hours=100, overall=76.8, superb=800),
    _row("ARMwavLM-S (100h)", 22.39, "ARM",
         (8.33, 11.37, 96.30, 0.0579, 65.40, 6.38, 7.41, 96.76, 84.89, 31.95, 63.41),
         hours=100, overall=77.0),
    _row("DPHuBERT (100h)", 23.59, "STaR",
         (10.02, 11.38, 96.36, 0.0634, 73.37, 6.25, 6.03, 97.42, 84.83, 33.03, 62.78),
         hours=100, overall=77.7, superb=819),
    _row("STaRHuBERT (100h)", 22.31, "STaR",
         (9.17, 10.92, 96.46, 0.0626, 72.26, 5.66, 5.97, 97.21, 84.89, 30.77, 61.22),
         hours=100, overall=77.8, superb=831),
]

#: Published per-task rows, keyed by model name (960 h pre-training unless the name says
#: "(100h)"). Each value is a :class:`PublishedModel`, a mapping of the 11 metrics with
#: ``params_m``, ``source``, ``printed_overall`` and ``printed_superb`` attributes.
PUBLISHED: dict[str, PublishedModel] = {r.name: r for r in _ROWS}
del _ROWS


def get_published(name: str) -> PublishedModel:
    """:data:`PUBLISHED` lookup with an error listing the available names."""
    try:
        return PUBLISHED[name]
    except KeyError:
        raise KeyError(f"no published row {name!r}; available: "
                       f"{', '.join(PUBLISHED)}") from None


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
