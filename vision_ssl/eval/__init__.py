"""Evaluation: linear probe on frozen features and the kNN monitor."""

from vision_ssl.eval.knn import KNNMonitor, extract_features, knn_scores
from vision_ssl.eval.linear import LinearProbe

__all__ = ["KNNMonitor", "LinearProbe", "extract_features", "knn_scores"]
