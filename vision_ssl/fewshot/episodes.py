"""Episodic few-shot sampling and the reported statistic.

An episode draws ``n_way`` classes, then per class ``n_query`` query images and ``k_shot``
support images without overlap. Episode ``i`` depends only on ``(seed, i)``, so every update
method (and every run of the same method) sees the same episodes. Within a class the queries are
drawn first and the support next from one permutation: the same episode index at more shots has
the same classes and queries and a support set that contains the smaller one, which pairs the
shot comparisons of a study.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

#: z-value of the two-sided 95 % normal interval
Z95 = 1.96


@dataclass(frozen=True)
class Episode:
    """Dataset indices and episode labels (0..n_way-1, in the order of ``classes``)."""

    classes: list[int]  #: dataset class index of each episode label
    support: list[int]
    support_labels: list[int]
    query: list[int]
    query_labels: list[int]


def class_index(targets: Sequence[int]) -> dict[int, np.ndarray]:
    """Dataset indices of every class (sorted by class)."""
    targets = np.asarray(targets)
    return {int(c): np.flatnonzero(targets == c) for c in np.unique(targets)}


def sample_episode(by_class: dict[int, np.ndarray], n_way: int, k_shot: int, n_query: int,
                   rng: np.random.Generator) -> Episode:
    """One episode from ``by_class`` (see :func:`class_index`).

    A class with fewer than ``k_shot + n_query`` images is drawn with replacement (support and
    query may then share images, as in the reference sampler); otherwise they never overlap.
    """
    if n_way > len(by_class):
        raise ValueError(f"{n_way}-way episodes need at least {n_way} classes, the dataset has {len(by_class)}")
    keys = sorted(by_class)
    classes = [keys[i] for i in sorted(rng.choice(len(keys), n_way, replace=False))]
    support, support_labels, query, query_labels = [], [], [], []
    for label, cls in enumerate(classes):
        pool = by_class[cls]
        need = k_shot + n_query
        picks = pool[rng.permutation(len(pool))[:need]] if len(pool) >= need else pool[rng.integers(0, len(pool), need)]
        query += picks[:n_query].tolist()
        support += picks[n_query:].tolist()
        query_labels += [label] * n_query
        support_labels += [label] * k_shot
    return Episode(classes, support, support_labels, query, query_labels)


def episode_rng(seed: int, index: int) -> np.random.Generator:
    """Generator of episode ``index`` of the run seeded ``seed`` (independent of anything else)."""
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


def iter_episodes(targets: Sequence[int], n_way: int, k_shot: int, n_query: int, episodes: int,
                  seed: int = 0) -> Iterator[Episode]:
    """The ``episodes`` episodes of a run (episode ``i`` drawn from :func:`episode_rng`)."""
    by_class = class_index(targets)
    for i in range(episodes):
        yield sample_episode(by_class, n_way, k_shot, n_query, episode_rng(seed, i))


def steps_per_episode(n_support: int, epochs: int = 100, batch_size: int = 4) -> int:
    """Optimizer steps of one episode's fine-tuning: ``epochs`` passes over the support set in
    mini-batches of ``batch_size`` (the last one may be smaller)."""
    return epochs * math.ceil(n_support / batch_size)


def confidence_interval(values: Sequence[float]) -> tuple[float, float]:
    """Mean and 95 % half-width ``1.96 s / sqrt(n)`` (``s``: sample standard deviation, n - 1;
    the half-width is 0 for a single value)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("confidence_interval needs at least one value")
    half = Z95 * x.std(ddof=1) / math.sqrt(x.size) if x.size > 1 else 0.0
    return float(x.mean()), float(half)
