"""Evaluation: linear probe on frozen features, the kNN monitor and the trivial baselines."""

from vision_ssl.eval.baselines import BASELINE_LABELS, BASELINES, PixelEncoder, chance_accuracy
from vision_ssl.eval.knn import KNNMonitor, extract_features, knn_scores
from vision_ssl.eval.linear import LinearProbe

__all__ = ["BASELINES", "BASELINE_LABELS", "KNNMonitor", "LinearProbe", "PixelEncoder", "chance_accuracy",
           "extract_features", "knn_scores"]
