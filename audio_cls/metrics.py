"""ICBHI challenge metrics and confusion-matrix plots.

Class 0 is normal, the others abnormal. With ``N_c`` the cycles of true class ``c`` and ``P_c``
those of class ``c`` predicted as exactly ``c``:

    Sp = P_0 / N_0,  Se = sum_{c>0} P_c / sum_{c>0} N_c,  Score = (Sp + Se) / 2   (in percent)

Sensitivity is exact-class recall pooled over the abnormal classes (a crackle predicted as "both"
is a miss). The 2-class evaluation of a 4-class model counts an abnormal cycle as a hit when it is
predicted as any abnormal class; normal still needs an exact prediction. Metrics are micro-pooled
over all test cycles. As in the challenge code, 1e-10 is added to the denominators.

The paper's best-epoch selection only considers epochs whose sensitivity passes a gate
(:func:`passes_gate`, ``trainer.min_sensitivity``); when no epoch passes, the kept "best" epoch is a
fallback, not a selection. :func:`check_gate` tells the two apart from a run's metric history, so
evaluation and the results table can flag such runs.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from audio_cls.data.icbhi import CLASS_NAMES

_EPS = 1e-10


@dataclass(frozen=True)
class IcbhiScores:
    """Specificity, sensitivity and their mean, in percent."""

    specificity: float
    sensitivity: float
    score: float

    def to_dict(self) -> dict[str, float]:
        """``{"specificity": ..., "sensitivity": ..., "score": ...}``."""
        return asdict(self)


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """Counts with rows = true class, columns = predicted class."""
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{y_true.size} labels but {y_pred.size} predictions")
    n = num_classes or int(max(y_true.max(initial=0), y_pred.max(initial=0)) + 1)
    if y_true.size and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= n):
        raise ValueError(f"labels and predictions must lie in 0..{n - 1}")
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def scores_from_confusion(cm: np.ndarray, two_class_eval: bool = False) -> IcbhiScores:
    """Sp / Se / Score of a confusion matrix (rows true, columns predicted, class 0 normal)."""
    cm = np.asarray(cm, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] < 2:
        raise ValueError(f"expected a square confusion matrix with >= 2 classes, got shape {cm.shape}")
    sp = cm[0, 0] / (cm[0].sum() + _EPS)
    hits = cm[1:, 1:].sum() if two_class_eval else np.trace(cm[1:, 1:])
    se = hits / (cm[1:].sum() + _EPS)
    return IcbhiScores(float(100.0 * sp), float(100.0 * se), float(100.0 * (sp + se) / 2))


def icbhi_scores(y_true, y_pred, two_class_eval: bool = False, num_classes: int | None = None) -> IcbhiScores:
    """ICBHI specificity, sensitivity and score (percent) of predictions; ``two_class_eval``
    gives the 2-class variant (any abnormal prediction counts for an abnormal cycle)."""
    return scores_from_confusion(confusion_matrix(y_true, y_pred, num_classes), two_class_eval)


def passes_gate(sensitivity: float, min_sensitivity: float) -> bool:
    """Whether an epoch with test sensitivity ``sensitivity`` (%) is eligible for best-epoch
    selection: strictly above ``min_sensitivity`` (%), as in the reference."""
    return sensitivity > min_sensitivity


@dataclass(frozen=True)
class GateCheck:
    """Whether any epoch of a training run passed the sensitivity gate of best-epoch selection."""

    min_sensitivity: float  #: the gate (%): an epoch is eligible when its Se is strictly above it
    passed: bool  #: some epoch passed, so the best checkpoint is a gated selection
    best_sensitivity: float  #: the highest Se (%) of any epoch looked at
    epochs: int  #: epochs looked at
    source: str  #: where the per-epoch sensitivities came from

    def to_dict(self) -> dict:
        """The fields as a JSON-ready dict (stored in ``scores.json`` under ``gate``)."""
        return asdict(self)

    def explain(self, run: str | Path, epoch: int) -> str:
        """One sentence for a run whose gate failed: why its best checkpoint (epoch ``epoch``) is no selection."""
        return (f"no epoch of {run} passed the sensitivity gate (Se > {self.min_sensitivity:g} %; the highest Se was "
                f"{self.best_sensitivity:.2f} % over {self.epochs} epochs), so its best checkpoint (epoch {epoch}) is "
                "the fallback kept by default, not a gated selection")


def check_gate(sensitivities: Sequence[float], min_sensitivity: float, source: str) -> GateCheck:
    """:class:`GateCheck` of a run from the test sensitivities (%) of its epochs."""
    if not sensitivities:
        raise ValueError(f"{source}: no per-epoch sensitivities to check the gate on")
    return GateCheck(min_sensitivity, any(passes_gate(se, min_sensitivity) for se in sensitivities),
                     max(sensitivities), len(sensitivities), source)


def epoch_sensitivities(metrics_csv: str | Path, column: str = "val_se") -> list[float]:
    """Per-epoch test sensitivities (%) from a run's metric history (``<run>/csv/metrics.csv``,
    written by training): the ``column`` value of every row that has one, in file order.

    Raises ValueError naming the file (and line) when it lacks the column or holds a value that
    is not a finite number.
    """
    metrics_csv = Path(metrics_csv)
    with open(metrics_csv, newline="") as f:
        reader = csv.DictReader(f)
        if column not in (reader.fieldnames or ()):
            raise ValueError(f"{metrics_csv}: no {column!r} column; is it the metric history of an audio_cls run?")
        values = []
        for number, row in enumerate(reader, start=2):
            text = row[column]
            if not text:
                continue  # a training-step row
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise ValueError(f"{metrics_csv}:{number}: {column} must be a finite number, got {text!r}; "
                                 "the history is damaged: retrain the run or repair the line")
            values.append(value)
    return values


def plot_confusion_matrix(cm: np.ndarray, path: str | Path, class_names: tuple[str, ...] = CLASS_NAMES,
                          title: str = "") -> Path:
    """Save the matrix as a PNG with counts and row-normalized percentages in each cell (a 2 x 2
    matrix is labelled normal / abnormal)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    names = ["normal", "abnormal"] if cm.shape[0] == 2 else list(class_names)
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.4 * len(names) + 2, 1.2 * len(names) + 1.5))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{cm[i, j]}\n{100 * rates[i, j]:.1f}%", ha="center", va="center",
                    color="white" if rates[i, j] > 0.5 else "black", fontsize=9)
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
