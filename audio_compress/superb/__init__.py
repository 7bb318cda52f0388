"""SUPERB evaluation of our upstreams: aggregate scores, published reference rows, result tables.

* :mod:`audio_compress.superb.score`: metric keys (``PR_per``, ``ASR_wer``, ``KS_acc``,
  ``QbE_mtwv``, ``SID_acc``, ``ASV_eer``, ``SD_der``, ``IC_acc``, ``SF_f1``, ``SF_cer``,
  ``ER_acc``), the papers' overall score, the leaderboard's 1000-point SUPERB score and the
  published per-task rows (HuBERT Base, DistilHuBERT, ARMHuBERT, STaRHuBERT, ...).
* :mod:`audio_compress.superb.results`: merge the runner's per-task ``metrics.json`` files and
  write ``results.json`` / ``results.md`` / ``results.png``
  (CLI: ``python -m audio_compress.bin.superb results``).
"""

from audio_compress.superb.results import (
                                           DEFAULT_PUBLISHED,
                                           MetricsFileError,
                                           MetricsOverrideWarning,
                                           collect_metrics,
                                           collect_released,
                                           find_metric_files,
                                           read_results,
                                           write_results,
)
from audio_compress.superb.score import (
                                           LOWER_IS_BETTER,
                                           METRIC_INFO,
                                           METRIC_KEYS,
                                           METRIC_TASK,
                                           PUBLISHED,
                                           REFERENCE_POINTS,
                                           TASKS,
                                           MissingMetricsError,
                                           PublishedModel,
                                           ReferencePoint,
                                           Score,
                                           UnknownMetricError,
                                           overall_score,
                                           superb_score,
                                           validate_metrics,
)

__all__ = [
    "LOWER_IS_BETTER", "METRIC_INFO", "METRIC_KEYS", "METRIC_TASK", "PUBLISHED",
    "REFERENCE_POINTS", "TASKS", "MissingMetricsError", "PublishedModel", "ReferencePoint",
    "Score", "UnknownMetricError", "overall_score", "superb_score", "validate_metrics",
    "DEFAULT_PUBLISHED", "MetricsFileError", "MetricsOverrideWarning", "collect_metrics", "collect_released",
    "find_metric_files", "read_results", "write_results",
]
