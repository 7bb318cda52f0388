"""Length-bucketed batch sampler: packing, determinism, DDP coverage (2 gloo processes)."""

from __future__ import annotations

import os
import socket

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from audio_compress.data.sampler import DurationBucketBatchSampler, make_buckets, split_to_multiple

LENGTHS = [16000, 48000, 8000, 32000, 32000, 4000, 160000, 12000, 20000, 24000, 6400, 40000, 9000]


def test_buckets_respect_budget_and_cover_everything():
    budget = 64000
    batches = make_buckets(LENGTHS, budget)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(LENGTHS)))
    for b in batches:
        longest = max(LENGTHS[i] for i in b)
        assert longest * len(b) <= budget or len(b) == 1
    # sorted longest first: the 160000-sample utterance is alone and first
    assert batches[0] == [6]


def test_buckets_hand_computed():
    # lengths sorted: 10(2) 8(0) 5(1) 5(3) 1(4); budget 20 -> [2,0] (2*10=20), [1,3] (2*5), +4 -> 3*5=15 ok
    assert make_buckets([8, 5, 10, 5, 1], 20) == [[2, 0], [1, 3, 4]]
    assert make_buckets([8, 5, 10, 5, 1], 20, max_batch_size=2) == [[2, 0], [1, 3], [4]]


def test_split_to_multiple_keeps_every_index():
    batches = [[0, 1, 2, 3], [4], [5, 6]]
    out = split_to_multiple(batches, 2)
    assert len(out) == 4
    assert sorted(i for b in out for i in b) == list(range(7))
    assert [0, 1] in out and [2, 3] in out
    with pytest.raises(ValueError, match="same number of batches"):
        split_to_multiple([[0]], 2)


def test_shuffle_depends_on_epoch_only():
    s = DurationBucketBatchSampler(LENGTHS, 64000, seed=3, num_replicas=1, rank=0)
    e0 = list(s)
    assert list(s) == e0
    s.set_epoch(1)
    e1 = list(s)
    assert sorted(map(tuple, e0)) == sorted(map(tuple, e1))
    orders = set()
    for epoch in range(6):
        s.set_epoch(epoch)
        orders.add(tuple(map(tuple, s)))
    assert len(orders) > 1


def test_ranks_are_disjoint_and_equal_length_without_process_group():
    ranks = [DurationBucketBatchSampler(LENGTHS, 64000, seed=1, num_replicas=2, rank=r) for r in range(2)]
    for r in ranks:
        r.set_epoch(4)
    got = [[i for b in r for i in b] for r in ranks]
    assert len(list(ranks[0])) == len(list(ranks[1])) == len(ranks[0])
    assert sorted(got[0] + got[1]) == list(range(len(LENGTHS)))
    assert not set(got[0]) & set(got[1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        sampler = DurationBucketBatchSampler(LENGTHS, 50000, seed=7)  # world/rank from the process group
        per_epoch = []
        for epoch in range(2):
            sampler.set_epoch(epoch)
            per_epoch.append([i for batch in sampler for i in batch])
        gathered: list = [None] * world
        dist.all_gather_object(gathered, (len(sampler), per_epoch))
        if rank == 0:
            out["result"] = gathered
    finally:
        dist.destroy_process_group()


def test_ddp_two_ranks_cover_every_utterance_once_per_epoch():
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_ddp_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    (len0, epochs0), (len1, epochs1) = out["result"]
    assert len0 == len1
    for epoch in range(2):
        seen = epochs0[epoch] + epochs1[epoch]
        assert sorted(seen) == list(range(len(LENGTHS)))
        assert not set(epochs0[epoch]) & set(epochs1[epoch])
