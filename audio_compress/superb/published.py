"""Published SUPERB rows of the ARMHuBERT and STaR papers' tables (:data:`PUBLISHED`).

Rows are copied from the papers' tables, never estimated. Released models without published
numbers are listed in :data:`UNPUBLISHED` with what is known: **STaRWavLM** (the STaR authors'
WavLM-teacher STaRHuBERT, 22.3 M parameters) was released as a checkpoint, but the STaR paper's
table gives no SUPERB numbers for it, so no table has a row for it; a results table that asks
for it says so in its notes. :data:`ROWS_FOR_TEACHER` picks the published rows
shown beside a run, by the family of its teacher (ARMwavLM-S 960 h / 100 h for WavLM).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from audio_compress.superb.metrics import METRIC_KEYS, validate_metrics

__all__ = ["SOURCES", "PublishedModel", "PUBLISHED", "UNPUBLISHED", "ROWS_FOR_TEACHER", "get_published"]

#: Short source ids -> description.
SOURCES: dict[str, str] = {
    "ARM": "ARMHuBERT paper table (Jang*, Kim* et al., Interspeech 2023, arXiv 2305.11685), "
           "as in sungnyun/ARMHuBERT assets/result.png",
    "STaR": "STaR paper table (Jang, Kim, Kim, ICASSP 2024, arXiv 2312.09040), "
            "as in sungnyun/ARMHuBERT assets/result_star.png",
    "ARM+STaR": "identical rows in the ARMHuBERT (arXiv 2305.11685) and STaR (arXiv 2312.09040) tables",
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

#: Released models with no published SUPERB numbers -> what is known (a note of the results table
#: instead of a row).
UNPUBLISHED: dict[str, str] = {
    "STaRWavLM": "released by the STaR authors (22.3 M parameters, WavLM Base teacher) without SUPERB "
                 "numbers: the STaR paper's table (arXiv 2312.09040) has HuBERT-teacher students only, so "
                 "there is no published row to compare with",
}

#: Published rows shown by default beside a run, by its teacher's family (transformers
#: ``model_type``): the teacher itself where published, the students distilled from that family,
#: and the STaR / ARMHuBERT / DistilHuBERT rows this toolkit reproduces. Names in
#: :data:`UNPUBLISHED` become notes.
ROWS_FOR_TEACHER: dict[str, tuple[str, ...]] = {
    "hubert": ("HuBERT Base", "DistilHuBERT", "ARMHuBERT", "STaRHuBERT"),
    "wavlm": ("wavLM Base", "ARMwavLM-S", "ARMwavLM-S (100h)", "STaRHuBERT", "STaRWavLM"),
    "wav2vec2": ("FitW2V2", "FitW2V2 (100h)", "DistilHuBERT", "ARMHuBERT", "STaRHuBERT"),
}


def get_published(name: str) -> PublishedModel:
    """:data:`PUBLISHED` lookup with an error listing the available names (or saying that a
    released model has no published numbers, :data:`UNPUBLISHED`)."""
    if name in UNPUBLISHED:
        raise KeyError(f"{name} has no published SUPERB row: {UNPUBLISHED[name]}")
    try:
        return PUBLISHED[name]
    except KeyError:
        raise KeyError(f"no published row {name!r}; available: "
                       f"{', '.join(PUBLISHED)}") from None
