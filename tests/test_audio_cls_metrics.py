"""ICBHI Sp / Se / Score on the hand-made confusion matrix of the reference (section 9.8)."""

from __future__ import annotations

import numpy as np
import pytest

from audio_cls.metrics import (
    check_gate,
    confusion_matrix,
    icbhi_scores,
    passes_gate,
    plot_confusion_matrix,
    scores_from_confusion,
)

CM = np.array([[80, 10, 5, 5],
               [10, 30, 0, 10],
               [5, 5, 15, 5],
               [2, 8, 5, 5]])


def _labels(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    true = np.repeat(np.arange(4).repeat(4), cm.reshape(-1))
    pred = np.repeat(np.tile(np.arange(4), 4), cm.reshape(-1))
    return true, pred


def test_four_class_scores():
    y_true, y_pred = _labels(CM)
    assert (confusion_matrix(y_true, y_pred, 4) == CM).all()
    scores = icbhi_scores(y_true, y_pred)
    assert scores.specificity == pytest.approx(80.0) and scores.sensitivity == pytest.approx(50.0)
    assert scores.score == pytest.approx(65.0)


def test_two_class_evaluation():
    scores = icbhi_scores(*_labels(CM), two_class_eval=True)
    assert scores.specificity == pytest.approx(80.0) and scores.sensitivity == pytest.approx(83.0)
    assert scores.score == pytest.approx(81.5)
    # a 2-class model uses the same formulas with one abnormal class
    two = scores_from_confusion(np.array([[70, 30], [40, 60]]))
    assert (two.specificity, two.sensitivity, two.score) == pytest.approx((70.0, 60.0, 65.0))


def test_exact_class_hits_and_empty_classes():
    # a crackle predicted as "both" is a miss in 4-class evaluation, a hit in 2-class evaluation
    assert icbhi_scores([1, 1], [3, 1]).sensitivity == pytest.approx(50.0)
    assert icbhi_scores([1, 1], [3, 1], two_class_eval=True).sensitivity == pytest.approx(100.0)
    no_normal = icbhi_scores([1, 2], [1, 2], num_classes=4)
    assert no_normal.specificity == 0.0 and no_normal.sensitivity == pytest.approx(100.0)
    with pytest.raises(ValueError, match="labels but"):
        icbhi_scores([0, 1], [0])


def test_confusion_png(tmp_path):
    path = plot_confusion_matrix(CM, tmp_path / "cm" / "confusion.png", title="fixture")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    assert plot_confusion_matrix(np.array([[3, 1], [0, 4]]), tmp_path / "two.png").is_file()


def test_sensitivity_gate_is_strict_and_needs_epochs():
    # the reference keeps an epoch for selection only when its Se is strictly above the gate
    assert passes_gate(5.01, 5.0) and not passes_gate(5.0, 5.0) and not passes_gate(0.0, 5.0)
    gate = check_gate([0.0, 4.5, 2.0], 5.0, "history.csv")
    assert (gate.passed, gate.best_sensitivity, gate.epochs, gate.source) == (False, 4.5, 3, "history.csv")
    assert gate.explain("exp/ce/seed3", 1) == (
        "no epoch of exp/ce/seed3 passed the sensitivity gate (Se > 5 %; the highest Se was 4.50 % over 3 epochs), "
        "so its best checkpoint (epoch 1) is the fallback kept by default, not a gated selection")
    with pytest.raises(ValueError, match="history.csv: no per-epoch sensitivities"):
        check_gate([], 5.0, "history.csv")
