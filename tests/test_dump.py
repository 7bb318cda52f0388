"""Teacher feature dump: stored targets equal the online teacher (fp16), padding, staged writing
and resume, failures that keep the previous dump, no-op re-runs, disk-space refusal and size
accounting."""

from __future__ import annotations

import collections
import os
import re
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn
from torch.utils.data import DataLoader

from audio_compress.data.kaldi import write_kaldi_map
from audio_compress.dump import (
    DumpBatch,
    DumpedSpeechDataset,
    DumpError,
    TeacherDump,
    dump_teacher_features,
    expected_feature_bytes,
    plan_shards,
    staging_dir,
)
from audio_compress.frames import num_frames
from audio_compress.teachers import load_teacher

# sample counts -> frames 49, 24, 36, 12, 61, 1
LENGTHS = {"spk1-a": 16000, "spk1-b": 8000, "spk2-c": 12000, "spk2-d": 4200, "spk3-e": 20000, "spk3-f": 450}
LAYERS = [0, 1, 2]


def make_data_dir(root, lengths=LENGTHS):
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    wav_scp, nums = {}, {}
    for i, (utt, n) in enumerate(sorted(lengths.items())):
        t = np.arange(n) / 16000
        x = 0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.05 * rng.standard_normal(n)
        ext = "flac" if i % 2 else "wav"
        path = audio / f"{utt}.{ext}"
        sf.write(str(path), x.astype(np.float32), 16000, subtype="PCM_16")
        wav_scp[utt] = str(path)
        nums[utt] = n
    data = root / "data"
    write_kaldi_map(data / "wav.scp", wav_scp)
    write_kaldi_map(data / "utt2num_samples", nums)
    return data


class CountingTeacher(nn.Module):
    """Wraps a teacher, counts forward calls, optionally fails at call ``fail_at``."""

    def __init__(self, teacher, fail_at=None, drop_frame=False):
        super().__init__()
        self.inner = teacher
        self.calls = 0
        self.fail_at = fail_at
        self.drop_frame = drop_frame

    num_layers = property(lambda self: self.inner.num_layers)
    hidden_size = property(lambda self: self.inner.hidden_size)

    def forward(self, wavs, padding_mask=None, **kwargs):
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise KeyboardInterrupt("simulated interruption")
        out = self.inner(wavs, padding_mask=padding_mask, **kwargs)
        if self.drop_frame:
            out.hidden_states = [h[:, :-1] for h in out.hidden_states]
        return out


@pytest.fixture(scope="module")
def teacher():
    return load_teacher("tiny_hubert")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_data_dir(tmp_path_factory.mktemp("corpus"))


def online_targets(teacher, data_dir):
    """Teacher run on every utterance alone, stacked as (n_layers, T, D), rounded to fp16."""
    from audio_compress.data.dataset import SpeechDataset

    ds = SpeechDataset(data_dir)
    out = {}
    with torch.no_grad():
        for i in range(len(ds)):
            item = ds[i]
            states = teacher(item["wav"].unsqueeze(0)).hidden_states
            out[item["utt_id"]] = torch.stack([states[layer][0] for layer in LAYERS]).half()
    return out


@pytest.fixture(scope="module")
def reference(teacher, data_dir):
    return online_targets(teacher, data_dir)


def bin_bytes(out):
    return sum(p.stat().st_size for p in out.glob("shard_*.bin"))


def test_plan_shards_is_deterministic_packing():
    assert plan_shards([49, 24, 36, 12, 61, 1], 60) == [[0, 1], [2, 3, 4], [5]]
    assert plan_shards([5, 5], 1000) == [[0, 1]]
    with pytest.raises(ValueError):
        plan_shards([1], 0)


def test_dump_equals_online_teacher_and_size_is_exact(teacher, data_dir, reference, tmp_path, capsys):
    out = dump_teacher_features(teacher, data_dir, tmp_path / "dump", LAYERS, shard_frames=60, progress=False)
    printed = capsys.readouterr().out
    assert (out / "done").is_file() and (out / "index.json").is_file()
    assert len(list(out.glob("shard_*.bin"))) == 3 == len(list(out.glob("shard_*.json")))

    dump = TeacherDump(out)
    assert dump.layers == LAYERS and dump.hidden_size == teacher.hidden_size and len(dump) == len(LENGTHS)
    for utt, n in LENGTHS.items():
        assert utt in dump
        got = dump.get(utt)
        assert got.dtype == np.float16 and got.shape == (len(LAYERS), num_frames(n), teacher.hidden_size)
        ref = reference[utt].numpy()
        assert np.array_equal(got.view(np.uint16), ref.view(np.uint16)), utt  # bit-exact fp16
        assert torch.equal(dump.get(utt, as_tensor=True), reference[utt])
    assert "nope" not in dump
    with pytest.raises(KeyError, match="re-run the dump stage"):
        dump.get("nope")

    # the printed expected size equals the bytes actually written
    expected = expected_feature_bytes(LENGTHS.values(), len(LAYERS), teacher.hidden_size)
    assert expected == bin_bytes(out) == sum(num_frames(n) for n in LENGTHS.values()) * 3 * 64 * 2
    match = re.search(r"Expected size: (\d+) bytes \(([\d.]+) GiB\)", printed)
    assert match and int(match.group(1)) == bin_bytes(out)
    assert str(out) in printed


def test_dataset_collate_pads_with_zeros(teacher, data_dir, reference, tmp_path):
    out = dump_teacher_features(teacher, data_dir, tmp_path / "dump", LAYERS, shard_frames=60, progress=False)
    ds = DumpedSpeechDataset(data_dir, out)
    assert ds.lengths == [LENGTHS[u] for u in sorted(LENGTHS)]
    items = [ds[i] for i in range(len(ds))]
    batch = ds.collate(items)
    assert isinstance(batch, DumpBatch) and len(batch) == len(LENGTHS)
    assert batch.layers == LAYERS and len(batch.targets) == len(LAYERS)
    total = num_frames(max(LENGTHS.values()))
    assert batch.wavs.shape == (len(LENGTHS), max(LENGTHS.values()))
    for b, utt in enumerate(batch.utt_ids):
        n = LENGTHS[utt]
        assert int(batch.lengths[b]) == n
        assert not batch.padding_mask[b, :n].any() and batch.padding_mask[b, n:].all()
        t = num_frames(n)
        for j, target in enumerate(batch.targets):
            assert target.dtype == torch.float32 and target.shape == (len(LENGTHS), total, teacher.hidden_size)
            assert torch.equal(target[b, :t], reference[utt][j].float())
            assert (target[b, t:] == 0).all()
    moved = batch.to("cpu")
    assert isinstance(moved, DumpBatch) and moved.layers == LAYERS

    # DataLoader workers (forked) open their own memory maps and read the same values
    ds.dump.get(batch.utt_ids[0])  # map opened in the parent before forking
    loader = DataLoader(ds, batch_size=2, collate_fn=ds.collate, num_workers=2)
    seen = 0
    for wb in loader:
        for b, utt in enumerate(wb.utt_ids):
            t = num_frames(LENGTHS[utt])
            assert torch.equal(wb.targets[2][b, :t], reference[utt][2].float())
            seen += 1
    assert seen == len(LENGTHS)


def test_resume_after_interruption_skips_completed_shards(teacher, data_dir, tmp_path):
    clean = dump_teacher_features(teacher, data_dir, tmp_path / "clean", LAYERS, shard_frames=60, progress=False)
    # shards: [a, b], [c, d, e], [f]; fail in the middle of the second shard (4th call)
    t1 = CountingTeacher(teacher, fail_at=4)
    out = tmp_path / "dump"
    work = staging_dir(out)
    with pytest.raises(KeyboardInterrupt):
        dump_teacher_features(t1, data_dir, out, LAYERS, shard_frames=60, progress=False)
    # the partial work is beside out_dir, never in it
    assert not out.exists() and work == tmp_path / "dump.partial"
    assert not (work / "done").exists() and (work / "shard_00000.json").is_file()
    assert not (work / "shard_00001.json").exists()
    with pytest.raises(DumpError, match=rf"{re.escape(str(out))} does not exist yet: an unfinished dump is in "
                                        rf"{re.escape(str(work))}; rerun stage 3"):
        TeacherDump(out)
    with pytest.raises(DumpError, match=rf"{re.escape(str(work))} is incomplete: it has no 'done' marker.*"
                                        "rerun stage 3"):
        TeacherDump(work)
    with pytest.raises(DumpError, match="unfinished dump"):
        DumpedSpeechDataset(data_dir, out)

    t2 = CountingTeacher(teacher)
    dump_teacher_features(t2, data_dir, out, LAYERS, shard_frames=60, progress=False)
    assert t2.calls == 4  # c, d, e, f; the completed first shard is not recomputed
    assert not work.exists() and (out / "done").is_file()
    for name in ("shard_00000.bin", "shard_00001.bin", "shard_00002.bin"):
        assert (out / name).read_bytes() == (clean / name).read_bytes()
    a, b = TeacherDump(out), TeacherDump(clean)
    for utt in LENGTHS:
        assert np.array_equal(a.get(utt), b.get(utt))

    # a damaged shard (truncated .bin) of an unfinished dump is detected and redone, nothing else
    os.replace(out, work)
    (work / "done").unlink()
    (work / "index.json").unlink()
    with open(work / "shard_00001.bin", "r+b") as f:
        f.truncate(100)
    t3 = CountingTeacher(teacher)
    dump_teacher_features(t3, data_dir, out, LAYERS, shard_frames=60, progress=False)
    assert t3.calls == 3  # c, d, e
    assert (out / "shard_00001.bin").read_bytes() == (clean / "shard_00001.bin").read_bytes()

    # a resumed dump must use the same shard size
    shutil.copytree(out, work)
    (work / "done").unlink()
    shutil.rmtree(out)
    with pytest.raises(DumpError, match=rf"{re.escape(str(work))} holds an unfinished teacher dump .*shard_frames=60 "
                                        r"\(requested 100\).*delete"):
        dump_teacher_features(t3, data_dir, out, LAYERS, shard_frames=100, progress=False)


def test_unfinished_dump_in_out_dir_is_resumed(teacher, data_dir, tmp_path):
    """A dump interrupted before dumps were staged (written straight into out_dir) is moved to the
    staging folder and resumed there, not redone."""
    out = dump_teacher_features(teacher, data_dir, tmp_path / "dump", LAYERS, shard_frames=60, progress=False)
    reference = {name: (out / name).read_bytes() for name in ("shard_00000.bin", "shard_00001.bin", "shard_00002.bin")}
    for name in ("done", "index.json", "shard_00002.json"):
        (out / name).unlink()
    with pytest.raises(DumpError, match="is incomplete"):
        TeacherDump(out)
    calls = []  # count calls of the very same teacher object (a wrapper would be another teacher)
    original = teacher.forward
    teacher.forward = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        dump_teacher_features(teacher, data_dir, out, LAYERS, shard_frames=60, progress=False)
    finally:
        del teacher.forward
    assert len(calls) == 1  # only f, of the last shard
    assert not staging_dir(out).exists() and (out / "done").is_file()
    assert {name: (out / name).read_bytes() for name in reference} == reference


def test_failure_midway_keeps_the_previous_dump(teacher, data_dir, tmp_path, monkeypatch):
    """A new request for a finished out_dir is written beside it; a failure after its first shard
    leaves the old dump untouched and readable, and only a complete new dump replaces it."""
    from audio_compress.dump import writer

    out = dump_teacher_features(teacher, data_dir, tmp_path / "dump", LAYERS, shard_frames=60, progress=False)
    old_files = {p.name: p.read_bytes() for p in out.iterdir()}
    old_values, old_sha = TeacherDump(out).get("spk2-c"), TeacherDump(out).teacher["sha256"]

    original, written = writer._write_shard, []

    def fail_after_first_shard(teacher, plan, shard, *args):
        if written:
            raise RuntimeError("simulated failure after the first shard")
        original(teacher, plan, shard, *args)
        written.append(shard)

    monkeypatch.setattr(writer, "_write_shard", fail_after_first_shard)
    other = load_teacher("tiny_hubert", seed=1)
    with pytest.raises(RuntimeError, match="simulated failure"):
        dump_teacher_features(other, data_dir, out, LAYERS, shard_frames=60, progress=False)
    assert written == [0]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old_files
    assert np.array_equal(TeacherDump(out).get("spk2-c"), old_values)
    work = staging_dir(out)
    assert (work / "shard_00000.json").is_file() and not (work / "done").exists()
    with pytest.raises(DumpError, match="is incomplete.*rerun stage 3"):
        TeacherDump(work)

    monkeypatch.setattr(writer, "_write_shard", original)
    calls = []
    forward = other.forward
    other.forward = lambda *a, **k: calls.append(1) or forward(*a, **k)
    dump_teacher_features(other, data_dir, out, LAYERS, shard_frames=60, progress=False)
    assert len(calls) == 4  # resumed: shard 0 (a, b) was kept
    new = TeacherDump(out)
    assert new.teacher["sha256"] != old_sha and not np.array_equal(new.get("spk2-c"), old_values)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dump"]  # no staging or set-aside folder left


def test_rerun_of_finished_dump_is_noop_and_another_request_replaces_it(teacher, data_dir, tmp_path, capsys,
                                                                         monkeypatch):
    out = tmp_path / "dump"
    dump_teacher_features(teacher, data_dir, out, LAYERS, progress=False)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()
    calls = []  # count calls of the very same teacher object (a wrapper would be another teacher)
    original = teacher.forward
    teacher.forward = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        dump_teacher_features(teacher, data_dir, out, LAYERS, progress=False)
    finally:
        del teacher.forward
    assert calls == []
    assert "nothing to do" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before

    dump_teacher_features(teacher, data_dir, out, [0, 2], progress=False)
    assert "holds a finished teacher dump of another request (teacher layers [0, 1, 2] (requested [0, 2]))" \
        in capsys.readouterr().out
    assert TeacherDump(out).layers == [0, 2] and sorted(p.name for p in tmp_path.iterdir()) == ["dump"]

    # an unfinished dump of one request is never resumed by another
    new = tmp_path / "new"
    monkeypatch.setattr(teacher, "forward", CountingTeacher(teacher, fail_at=1).forward)
    with pytest.raises(KeyboardInterrupt):
        dump_teacher_features(teacher, data_dir, new, LAYERS, progress=False)
    monkeypatch.undo()
    with pytest.raises(DumpError, match="unfinished teacher dump .*teacher layers .*Rerun with that dump's arguments"):
        dump_teacher_features(teacher, data_dir, new, [0, 2], progress=False)
    with pytest.raises(DumpError, match="unfinished teacher dump .*teacher"):
        dump_teacher_features(load_teacher("tiny_hubert", seed=1), data_dir, new, LAYERS, progress=False)
    counting = CountingTeacher(teacher)  # same weights, other module: parameter names differ
    with pytest.raises(DumpError, match="teacher"):
        dump_teacher_features(counting, data_dir, new, LAYERS, progress=False)
    other = make_data_dir(tmp_path / "other", {"spk9-z": 8000})
    with pytest.raises(DumpError, match="data dir"):
        dump_teacher_features(teacher, other, new, LAYERS, progress=False)
    assert counting.calls == 0


def test_disk_space_refusal(teacher, data_dir, tmp_path, monkeypatch):
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    out = tmp_path / "sub" / "dump"
    counting = CountingTeacher(teacher)
    with pytest.raises(DumpError, match="not enough disk space") as info:
        dump_teacher_features(counting, data_dir, out, LAYERS, progress=False)
    needed = int(expected_feature_bytes(LENGTHS.values(), 3, teacher.hidden_size) * 1.05)
    numbers = [int(v) for v in re.findall(r"needs (\d+) bytes", str(info.value))]
    assert numbers and numbers[0] >= needed
    assert "1000 bytes" in str(info.value) and str(out) in str(info.value)
    assert counting.calls == 0 and not out.exists() and not staging_dir(out).exists()


def test_frame_count_mismatch_names_the_utterance(teacher, data_dir, tmp_path):
    with pytest.raises(DumpError, match="utterance spk1-a"):
        dump_teacher_features(CountingTeacher(teacher, drop_frame=True), data_dir, tmp_path / "d", LAYERS,
                              progress=False)


def test_layers_are_validated(teacher, data_dir, tmp_path):
    with pytest.raises(ValueError, match="out of range"):
        dump_teacher_features(teacher, data_dir, tmp_path / "d", [0, 5], progress=False)


def test_dataset_refuses_data_missing_from_dump(teacher, data_dir, tmp_path):
    out = dump_teacher_features(teacher, data_dir, tmp_path / "dump", LAYERS, progress=False)
    bigger = make_data_dir(tmp_path / "bigger", {**LENGTHS, "spk4-g": 9000})
    with pytest.raises(DumpError, match="spk4-g.*re-run the dump stage"):
        DumpedSpeechDataset(bigger, out)


def test_cli_layers_and_config(data_dir, tmp_path, capsys, reference):
    from audio_compress.bin.dump_teacher import main

    out = tmp_path / "cli"
    main(["--teacher", "tiny_hubert", "--data", str(data_dir), "--out", str(out), "--layers", "2,0",
          "--shard_frames", "50", "--num_workers", "1", "--progress", "true"])
    captured = capsys.readouterr()
    assert f"are in {out}" in captured.out and "teacher dump" in captured.err  # tqdm bar
    dump = TeacherDump(out)
    assert dump.layers == [0, 2]
    assert torch.equal(dump.get("spk2-c", as_tensor=True), reference["spk2-c"][[0, 2]])

    config = tmp_path / "star.yaml"
    config.write_text("method: star\nstudent: tiny_star\nteacher: tiny_hubert\n")
    out2 = tmp_path / "cli2"
    main(["--config", str(config), "--data", str(data_dir), "--out", str(out2), "--num_workers", "0",
          "--progress", "false"])
    printed = capsys.readouterr().out
    assert "Layers from" in printed
    # tiny_star (3 layers) over the 4-layer tiny teacher: X^0 + layers round(4i/3)
    assert TeacherDump(out2).layers == [0, 1, 3, 4]
