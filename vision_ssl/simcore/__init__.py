"""SimCore (arXiv 2303.11101): coreset sampling from an open set for self-supervised pretraining
on a small target set.

* :mod:`~vision_ssl.simcore.selection`: k-means centroids and the greedy rounds (full-matrix and
  streamed over feature chunks, same result);
* :mod:`~vision_ssl.simcore.budget`: coreset budget, random baseline, epoch recomputation;
* :mod:`~vision_ssl.simcore.features`: features on disk as memory-mapped shards;
* :mod:`~vision_ssl.simcore.coreset`: drawing a coreset from feature folders into the pretraining lists;
* :mod:`~vision_ssl.simcore.config`: the recipe's coreset settings;
* :mod:`~vision_ssl.simcore.mini`: the mini recipe's digits (+ Omniglot) target and open set.
"""

from vision_ssl.simcore.budget import IMAGENET_TRAIN_SIZE, coreset_budget, random_coreset, recompute_epochs
from vision_ssl.simcore.config import CoresetConfig, load_coreset_config
from vision_ssl.simcore.selection import (
    Selection,
    cosine_scores,
    greedy_select,
    greedy_select_streamed,
    kmeans_centroids,
    l2_normalize,
    select_coreset,
)

__all__ = ["IMAGENET_TRAIN_SIZE", "CoresetConfig", "Selection", "coreset_budget", "cosine_scores", "greedy_select",
           "greedy_select_streamed", "kmeans_centroids", "l2_normalize", "load_coreset_config", "random_coreset",
           "recompute_epochs", "select_coreset"]
