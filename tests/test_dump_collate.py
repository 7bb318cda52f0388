"""Dump-fed batches: the fp16 collate in the stored layout gives the training step exactly the float32
targets of the previous per-layer collate (checked against the shard bytes on disk), through
DataLoader workers, crops and ``DumpBatch.to``; the reader's views never write to the dump."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_dump import LENGTHS, make_data_dir
from torch.utils.data import DataLoader

from audio_compress.dump import DumpBatch, DumpedSpeechDataset, TeacherDump, dump_teacher_features
from audio_compress.frames import num_frames
from audio_compress.teachers import load_teacher
from compact_ssl.io import read_json

#: a non-contiguous choice of the tiny teacher's hidden states 0..4
LAYERS = [0, 2, 3]
#: 20-frame crops: spk1-a, spk1-b, spk2-c and spk3-e are cropped
CROP = 6500


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_data_dir(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def dump_dir(data_dir, tmp_path_factory):
    # 60-frame shards: the six utterances (49, 24, 37, 12, 62 and 1 frames) span three shards
    out = dump_teacher_features(load_teacher("tiny_hubert"), data_dir, tmp_path_factory.mktemp("dump") / "train",
                                LAYERS, shard_frames=60, progress=False)
    assert len(list(out.glob("shard_*.bin"))) == 3
    return out


def stored_frames(dump_dir) -> dict[str, np.ndarray]:
    """Every utterance's ``(T, n_layers, D)`` block, read from the shard files with numpy alone."""
    index = read_json(dump_dir / "index.json")
    shards = [np.fromfile(dump_dir / s["file"], dtype="<f2").reshape(-1, len(LAYERS), index["hidden_size"])
              for s in index["shards"]]
    return {utt: shards[shard][offset : offset + frames] for utt, (shard, offset, frames) in index["utts"].items()}


def previous_targets(stored: dict[str, np.ndarray], batch: DumpBatch, starts: list[int]) -> list[torch.Tensor]:
    """What the collate gave before: one zeroed float32 ``(B, T, D)`` tensor per layer, filled layer by layer
    with the frames of each utterance (from frame ``starts[b]``, as many as its waveform has)."""
    total = num_frames(batch.wavs.shape[1])
    hidden = next(iter(stored.values())).shape[2]
    targets = [torch.zeros(len(batch), total, hidden) for _ in LAYERS]
    for b, utt in enumerate(batch.utt_ids):
        n = num_frames(int(batch.lengths[b]))
        for j, target in enumerate(targets):
            target[b, :n] = torch.from_numpy(stored[utt][starts[b] : starts[b] + n, j].astype(np.float32))
    return targets


def assert_same_targets(batch: DumpBatch, expected: list[torch.Tensor]) -> None:
    assert batch.layers == LAYERS and len(batch.targets) == len(LAYERS)
    assert batch.features.dtype == torch.float16 and batch.features.shape[2] == len(LAYERS)
    for got, want in zip(batch.targets, expected):
        assert got.dtype == torch.float32 and got.is_contiguous() and got.shape == want.shape
        assert torch.equal(got, want)


def test_collate_equals_the_previous_float32_targets(data_dir, dump_dir):
    ds = DumpedSpeechDataset(data_dir, dump_dir)
    stored = stored_frames(dump_dir)
    for order in ([0, 1, 2, 3, 4, 5], [5, 3, 4], [3]):
        batch = ds.collate([ds[i] for i in order])
        assert batch.utt_ids == [ds.utt_ids[i] for i in order]
        expected = previous_targets(stored, batch, [0] * len(order))
        assert_same_targets(batch, expected)
        # padded frames are zeros: the 62-frame spk3-e pads the 1-frame spk3-f with 61
        if order[0] == 5:
            assert batch.features.shape[1] == 62 and not batch.features[0, 1:].any() and batch.features[0, 0].any()


def test_cropped_batches_equal_the_previous_targets_at_their_start_frames(data_dir, dump_dir):
    ds = DumpedSpeechDataset(data_dir, dump_dir, crop_samples=CROP)
    stored = stored_frames(dump_dir)
    torch.manual_seed(0)
    starts = set()
    for _ in range(3):
        items = [ds[i] for i in range(len(ds))]
        batch = ds.collate(items)
        starts.update(item["start_frame"] for item in items)
        assert_same_targets(batch, previous_targets(stored, batch, [item["start_frame"] for item in items]))
        assert batch.features.shape[1] == 20
    assert len(starts) > 3


def test_worker_batches_and_device_copies_keep_the_values(data_dir, dump_dir):
    ds = DumpedSpeechDataset(data_dir, dump_dir)
    stored = stored_frames(dump_dir)
    ds.dump.get(ds.utt_ids[0])  # maps opened in the parent before forking
    # workers collate into shared memory; the main process gets the same values
    loader = DataLoader(ds, batch_size=4, collate_fn=ds.collate, num_workers=2)
    seen = []
    for batch in loader:
        assert_same_targets(batch, previous_targets(stored, batch, [0] * len(batch)))
        seen += batch.utt_ids
        moved = batch.to("cpu")
        # the fp16 features travel (half the bytes), the float32 targets are made where the batch is
        assert isinstance(moved, DumpBatch) and moved.features.dtype == torch.float16
        assert moved.targets is not batch.targets
        assert_same_targets(moved, batch.targets)
    assert sorted(seen) == sorted(LENGTHS)


def test_batch_from_per_layer_targets_stacks_them():
    per_layer = [torch.randn(2, 5, 4) for _ in LAYERS]
    batch = DumpBatch(torch.zeros(2, 1920), torch.zeros(2, 1920, dtype=torch.bool), torch.tensor([1920, 1920]),
                      ["a", "b"], per_layer, list(LAYERS))
    assert batch.features.shape == (2, 5, 3, 4)
    assert all(torch.equal(got, want) for got, want in zip(batch.targets, per_layer))
    with pytest.raises(ValueError, match=r"do not hold \(batch, frames, 2 layers, hidden\)"):
        DumpBatch(batch.wavs, batch.padding_mask, batch.lengths, batch.utt_ids, per_layer, [0, 2])


def test_views_of_the_map_never_write_to_the_dump(data_dir, dump_dir):
    before = {p.name: p.read_bytes() for p in dump_dir.glob("shard_*.bin")}
    ds = DumpedSpeechDataset(data_dir, dump_dir)
    item = ds[ds.utt_ids.index("spk1-a")]
    original = item["targets"].clone()
    item["targets"].fill_(7.0)  # copy-on-write: this process's pages only
    assert (ds.dump.view("spk1-a") == 7.0).all()
    fresh = TeacherDump(dump_dir)
    assert torch.equal(fresh.get("spk1-a", as_tensor=True), original)
    copy = fresh.get("spk2-c", as_tensor=True)
    copy.fill_(3.0)  # get returns a copy: the next read is untouched
    assert not (fresh.get("spk2-c", as_tensor=True) == 3.0).all()
    assert {p.name: p.read_bytes() for p in dump_dir.glob("shard_*.bin")} == before
