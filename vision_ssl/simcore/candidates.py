"""Per-centroid candidate lists for the SimCore greedy rounds.

Column ``j`` of a :class:`CandidateTable` lists open-set samples in the order centroid ``j``
wants them: similarity descending, ties by ascending index. The full-matrix table holds every
sample (``m = n``); the streamed table holds only the top ``m`` per centroid, built in one pass
over feature chunks and refilled by another pass when a centroid has used up its list. Because a
refill takes the best ``m`` samples not yet selected, the streamed table yields exactly the picks
of the full one.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero); row-wise, so chunking never changes it."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def cosine_scores(features: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """``[n, k]`` cosine similarities of (l2-normalised) ``features`` to unit ``centroids``."""
    return l2_normalize(features) @ centroids.T


class CandidateTable:
    """``index[r, j]`` / ``value[r, j]``: the ``r``-th candidate of centroid ``j`` and its similarity;
    ``length[j]`` valid rows per column (the rest is padding, index -1)."""

    def __init__(self, index: np.ndarray, value: np.ndarray, length: np.ndarray) -> None:
        self.index, self.value, self.length = index, value, length
        self.pointer = np.zeros(index.shape[1], dtype=np.int64)

    @classmethod
    def from_matrix(cls, similarity: np.ndarray) -> CandidateTable:
        """Every sample in every column: the plain full-matrix reference."""
        similarity = np.asarray(similarity)
        order = np.argsort(-similarity, axis=0, kind="stable")
        n, k = similarity.shape
        return cls(order, np.take_along_axis(similarity, order, axis=0), np.full(k, n, dtype=np.int64))

    def replace_columns(self, columns: np.ndarray, other: CandidateTable) -> None:
        """Put ``other``'s columns in place of ``columns`` and rewind their pointers."""
        self.index[:, columns], self.value[:, columns], self.length[columns] = other.index, other.value, other.length
        self.pointer[columns] = 0

    def exhausted(self) -> np.ndarray:
        """Columns whose pointer has passed their last candidate."""
        return self.pointer >= self.length

    def skip_selected(self, selected: np.ndarray) -> None:
        """Advance every pointer past candidates already in ``selected`` (or to the column end)."""
        cols = np.arange(self.index.shape[1])
        while True:
            live = ~self.exhausted()
            rows = np.minimum(self.pointer, len(self.index) - 1)
            blocked = live & selected[np.maximum(self.index[rows, cols], 0)]
            if not blocked.any():
                return
            self.pointer[blocked] += 1

    def heads(self) -> tuple[np.ndarray, np.ndarray]:
        """(index, similarity) at every pointer (call once no column is exhausted)."""
        cols = np.arange(self.index.shape[1])
        return self.index[self.pointer, cols], self.value[self.pointer, cols]


def _top_m(cols: np.ndarray, values: np.ndarray, index: np.ndarray, k: int, m: int) -> CandidateTable:
    """The ``m`` best (value desc, index asc) of the ``(col, value, index)`` triplets per column."""
    order = np.lexsort((index, -values, cols))
    cols, values, index = cols[order], values[order], index[order]
    counts = np.bincount(cols, minlength=k)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(cols)) - starts[cols]
    keep = rank < m
    out_index = np.full((m, k), -1, dtype=np.int64)
    out_value = np.full((m, k), -np.inf, dtype=np.float32)
    out_index[rank[keep], cols[keep]] = index[keep]
    out_value[rank[keep], cols[keep]] = values[keep]
    return CandidateTable(out_index, out_value, np.minimum(counts, m))


def stream_top_m(chunks: Iterable[np.ndarray], centroids: np.ndarray, m: int, selected: np.ndarray | None = None,
                 columns: np.ndarray | None = None) -> tuple[CandidateTable, int]:
    """Top-``m`` candidates of each centroid (or of those in ``columns``) over open-set feature
    ``chunks`` (consecutive row blocks, read once), leaving out samples marked in ``selected``;
    returns the table and the number of rows read. Memory: one chunk's scores + ``2 m k``
    candidates."""
    columns = np.arange(len(centroids)) if columns is None else columns
    k = len(columns)
    table = CandidateTable(np.full((m, k), -1, dtype=np.int64), np.full((m, k), -np.inf, dtype=np.float32),
                           np.zeros(k, dtype=np.int64))
    offset = 0
    for chunk in chunks:
        # scored against all centroids even for a few columns: a different matrix shape may round
        # differently in BLAS, and refills must reproduce the first pass bit for bit
        scores = cosine_scores(chunk, centroids)[:, columns]
        if not np.isfinite(scores).all():
            raise ValueError(f"open-set features rows {offset}..{offset + len(chunk) - 1} contain NaN or inf; "
                             "re-run the feature extraction")
        if selected is not None:
            scores[selected[offset:offset + len(chunk)]] = -np.inf
        if len(scores) > m:  # entries below a column's m-th best can never enter its list
            floor = np.partition(scores, len(scores) - m, axis=0)[len(scores) - m]
            mask = (scores >= floor) & np.isfinite(scores)
        else:
            mask = np.isfinite(scores)
        rows, cols = np.nonzero(mask)
        old_rows, old_cols = np.nonzero(np.arange(m)[:, None] < table.length[None, :])
        table = _top_m(np.concatenate([old_cols, cols]),
                       np.concatenate([table.value[old_rows, old_cols], scores[rows, cols]]),
                       np.concatenate([table.index[old_rows, old_cols], rows + offset]), k, m)
        offset += len(chunk)
    return table, offset
