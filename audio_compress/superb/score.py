"""SUPERB aggregate scores: the papers' "overall score" and the leaderboard's 1000-point score.

Pure functions, no I/O. Metrics are passed as a mapping from the keys in :data:`METRIC_KEYS`
to floats, in the units of the papers' tables:

* accuracies, error rates, F1 and CER in **percent** (``KS_acc=96.30``, ``ASR_wer=6.42``);
* QbE MTWV as a **fraction** (``QbE_mtwv=0.0736``), as printed in the ARMHuBERT/STaR tables.

Two aggregates are implemented (the leaderboard's formula and reference points are those of the SUPERB
website, ``superbbenchmark/website-react``, ``overall_metrics.js`` and ``Data.js``):

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
The metric keys and their checks live in :mod:`audio_compress.superb.metrics`, the published
rows in :mod:`audio_compress.superb.published`; both are re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from audio_compress.superb.metrics import (
    LOWER_IS_BETTER,
    METRIC_INFO,
    METRIC_KEYS,
    METRIC_TASK,
    TASKS,
    MetricInfo,
    MissingMetricsError,
    UnknownMetricError,
    format_metric,
    validate_metrics,
)
from audio_compress.superb.published import PUBLISHED, SOURCES, PublishedModel, get_published

__all__ = [
    "METRIC_KEYS", "LOWER_IS_BETTER", "TASKS", "METRIC_TASK", "METRIC_INFO", "MetricInfo",
    "ReferencePoint", "REFERENCE_POINTS", "REFERENCE_POINTS_SOURCE",
    "Score", "MissingMetricsError", "UnknownMetricError",
    "validate_metrics", "overall_values", "overall_score", "superb_metric_scores",
    "superb_task_scores", "superb_score", "PublishedModel", "PUBLISHED", "SOURCES",
    "get_published", "format_metric",
]

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
    "from the SUPERB website's reference_points table (superbbenchmark/website-react, Data.js)")


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
