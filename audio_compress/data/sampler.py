"""Length-bucketed batch sampler that works with and without DDP.

Utterances are sorted by length and packed greedily so that the *padded* audio of a batch
(``batch_size x longest``) stays under a budget: batches of short utterances hold many items,
batches of long ones few, and little compute is spent on padding. Batches are fixed; their order
is shuffled every epoch (``set_epoch``, which Lightning calls). Under DDP every rank takes a
disjoint share of the batches; when the batch count does not divide by the world size, the
largest batches are split in two until it does, so every utterance is seen exactly once per epoch
and every rank runs the same number of steps (unequal counts would hang DDP's collectives).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


def make_buckets(lengths: Sequence[int], max_batch_samples: int, max_batch_size: int | None = None) -> list[list[int]]:
    """Pack indices into batches whose padded size ``len(batch) * max(length)`` is at most
    ``max_batch_samples`` (and at most ``max_batch_size`` items). An utterance longer than the
    budget gets a batch of its own."""
    if max_batch_samples <= 0:
        raise ValueError(f"max_batch_samples must be positive, got {max_batch_samples}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    too_long = 0
    for idx in order:
        length = lengths[idx]
        new_longest = max(longest, length)
        full = max_batch_size is not None and len(current) >= max_batch_size
        if current and (full or new_longest * (len(current) + 1) > max_batch_samples):
            batches.append(current)
            current, new_longest = [], length
        current.append(idx)
        longest = new_longest
        too_long += length > max_batch_samples
    if current:
        batches.append(current)
    if too_long:
        warnings.warn(
            f"{too_long} utterances are longer than max_batch_samples={max_batch_samples}; "
            "each forms a batch of its own (consider cropping)",
            stacklevel=2,
        )
    return batches


def split_to_multiple(batches: list[list[int]], multiple: int) -> list[list[int]]:
    """Split the largest batches in halves until the count is a multiple of ``multiple``."""
    batches = [list(b) for b in batches]
    while len(batches) % multiple:
        largest = max(range(len(batches)), key=lambda i: (len(batches[i]), -i))
        if len(batches[largest]) < 2:
            raise ValueError(
                f"cannot give {multiple} ranks the same number of batches: only "
                f"{sum(len(b) for b in batches)} utterances"
            )
        half = len(batches[largest]) // 2
        batch = batches.pop(largest)
        batches[largest:largest] = [batch[:half], batch[half:]]
    return batches


class DurationBucketBatchSampler(Sampler[list[int]]):
    """Batch sampler over length buckets, DDP-aware.

    Args:
        lengths: length (samples) of every dataset item, e.g. ``SpeechDataset.lengths``.
        max_batch_samples: budget of padded samples per batch (e.g. ``4 * 16000 * 10`` for
            about four 10-s utterances).
        max_batch_size: optional cap on items per batch.
        shuffle: shuffle batch order each epoch (training); otherwise longest first.
        seed: base seed; the order of epoch ``e`` depends on ``seed + e`` only.
        num_replicas, rank: DDP world size and rank; default from ``torch.distributed`` when it
            is initialised, else a single process.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        max_batch_samples: int,
        max_batch_size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ):
        if num_replicas is None:
            num_replicas = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if rank is None:
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside [0, {num_replicas})")
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self._skip = 0
        buckets = make_buckets(lengths, max_batch_samples, max_batch_size)
        self.batches = split_to_multiple(buckets, num_replicas)

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffling of ``epoch`` (called by Lightning before each epoch)."""
        self.epoch = epoch

    def skip(self, count: int) -> None:
        """Leave out the first ``count`` batches of the next iteration (a resumed epoch)."""
        self._skip = count

    def __iter__(self) -> Iterator[list[int]]:
        skip, self._skip = self._skip, 0
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(len(self.batches), generator=gen).tolist()
        else:
            order = list(range(len(self.batches)))
        for pos in order[self.rank :: self.num_replicas][skip:]:
            yield self.batches[pos]

    def __len__(self) -> int:
        return len(self.batches) // self.num_replicas
