"""SimCore coreset selection (reference section 3.2, steps 3-5): k-means centroids of the target
features, then greedy rounds in which every centroid takes its most similar open-set sample not
yet selected.

Round ``r`` picks ``T_r`` (one sample per centroid, duplicates merged) with utility
``f_r = mean_j S[pick_j, j]``. With ``stop``, round ``patience`` sets ``theta = threshold * f_r``
and any later round with ``f_r < theta`` ends the selection and is discarded; before that round
nothing stops. A round that would overflow ``budget`` is cut to a random subset that fills it
exactly. The stop parameters are arguments here (the reference reads them from an out-of-scope
``args``, reference 3.7).

:func:`greedy_select` works on a full ``[n, k]`` similarity matrix (the plain reference, and the
toy cases of reference section 10); :func:`greedy_select_streamed` reads the open-set features in
chunks and keeps only a top-``m`` candidate list per centroid, with the same result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from vision_ssl.simcore.candidates import CandidateTable, cosine_scores, l2_normalize, stream_top_m

__all__ = ["Selection", "cosine_scores", "default_top_m", "greedy_select", "greedy_select_streamed",
           "kmeans_centroids", "l2_normalize", "select_coreset"]


@dataclass
class Selection:
    """Outcome of the greedy rounds.

    ``indices``: selected open-set rows, round by round (ascending within a round).
    ``utilities``: ``f_r`` of every round evaluated, the discarded stopping round included.
    ``rounds``: rounds kept. ``stop_round``: the round that met the stopping rule (None if none).
    ``threshold``: ``theta`` (None without ``stop`` or before round ``patience``).
    ``reason``: ``stop`` | ``budget`` | ``exhausted`` (every open-set sample taken).
    ``refills``: extra passes over the chunks (streamed selection only).
    """

    indices: np.ndarray
    utilities: list[float] = field(default_factory=list)
    rounds: int = 0
    stop_round: int | None = None
    threshold: float | None = None
    reason: str = "budget"
    budget: int = 0
    refills: int = 0

    def summary(self) -> dict:
        """JSON-ready summary (without the indices)."""
        return {"size": int(len(self.indices)), "budget": self.budget, "rounds": self.rounds,
                "stop_round": self.stop_round, "threshold": self.threshold, "reason": self.reason,
                "refills": self.refills, "utilities": [round(u, 6) for u in self.utilities]}


def kmeans_centroids(target: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """``[k, d]`` unit centroids of the l2-normalised target features (scikit-learn k-means, fixed
    ``seed``); with ``k >= len(target)`` every target sample is its own centroid."""
    from sklearn.cluster import KMeans

    x = l2_normalize(target)
    if k >= len(x):
        return x
    return l2_normalize(KMeans(n_clusters=k, random_state=seed, n_init="auto").fit(x).cluster_centers_)


def default_top_m(budget: int, k: int) -> int:
    """Candidate-list length per centroid: twice the rounds a budget-filling run needs if the
    centroids never collide (collisions cost refill passes, not correctness)."""
    return max(32, 2 * math.ceil(budget / k))


def _greedy(table: CandidateTable, n_open: int, budget: int, stop: bool, patience: int, threshold: float,
            rng: np.random.Generator, refill: Callable[[np.ndarray, np.ndarray], None] | None) -> Selection:
    if patience < 1 or not 0 < threshold <= 1:
        raise ValueError(f"need patience >= 1 and 0 < threshold <= 1, got {patience} and {threshold}")
    selected = np.zeros(n_open, dtype=bool)
    picked: list[np.ndarray] = []
    result = Selection(np.zeros(0, dtype=np.int64), budget=budget)
    taken = 0
    while taken < min(budget, n_open):
        table.skip_selected(selected)
        empty = table.exhausted()
        if empty.any():
            refill(np.flatnonzero(empty), selected)
            result.refills += 1
            table.skip_selected(selected)
        picks, scores = table.heads()
        utility = float(np.mean(scores, dtype=np.float64))
        result.utilities.append(utility)
        r = len(result.utilities)
        if stop and result.threshold is not None and utility < result.threshold:
            result.stop_round, result.reason = r, "stop"
            break
        if stop and r == patience:
            result.threshold = threshold * utility
        new = np.unique(picks)
        if taken + len(new) > budget:
            new = np.sort(rng.choice(new, budget - taken, replace=False))
        selected[new] = True
        picked.append(new)
        taken += len(new)
        result.rounds = r
    if picked:
        result.indices = np.concatenate(picked)
    if result.stop_round is None:
        result.reason = "budget" if taken >= budget else "exhausted"
    return result


def greedy_select(similarity: np.ndarray, budget: int, stop: bool = True, patience: int = 20,
                  threshold: float = 0.95, rng: np.random.Generator | None = None) -> Selection:
    """Greedy rounds on a full ``[n_open, k]`` similarity matrix (``n_open * k`` scores and their
    sort order in memory)."""
    similarity = np.asarray(similarity)
    rng = rng if rng is not None else np.random.default_rng(0)
    return _greedy(CandidateTable.from_matrix(similarity), len(similarity), budget, stop, patience, threshold, rng,
                   refill=None)


def greedy_select_streamed(chunks: Iterable[np.ndarray], centroids: np.ndarray, budget: int, stop: bool = True,
                           patience: int = 20, threshold: float = 0.95, rng: np.random.Generator | None = None,
                           top_m: int | None = None) -> Selection:
    """Greedy rounds over open-set features read in ``chunks`` (re-iterable, e.g. a list of arrays or
    :class:`~vision_ssl.simcore.features.FeatureShards`), scored against unit ``centroids``.

    One pass builds a top-``top_m`` list per centroid; a centroid that uses up its list triggers
    another pass for the best ``top_m`` samples not yet selected. Memory: one chunk's ``[c, k]``
    scores, ``2 k top_m`` candidates and one selection flag per open-set sample. Gives exactly
    :func:`greedy_select` on ``cosine_scores(all features, centroids)``.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    m = top_m or default_top_m(budget, len(centroids))
    table, n_open = stream_top_m(chunks, centroids, m)

    def refill(columns: np.ndarray, selected: np.ndarray) -> None:
        fresh, _ = stream_top_m(chunks, centroids, m, selected, columns)
        table.replace_columns(columns, fresh)

    return _greedy(table, n_open, budget, stop, patience, threshold, rng, refill)


def select_coreset(target: np.ndarray, chunks: Iterable[np.ndarray], k: int, budget: int, stop: bool = True,
                   patience: int = 20, threshold: float = 0.95, seed: int = 0,
                   top_m: int | None = None) -> Selection:
    """SimCore: k-means (``seed``) on the target features, then :func:`greedy_select_streamed`
    (its random budget cut also seeded by ``seed``)."""
    centroids = kmeans_centroids(target, k, seed)
    return greedy_select_streamed(chunks, centroids, budget, stop, patience, threshold,
                                  np.random.default_rng(seed), top_m)
