"""Cropping with a feature dump: frame-aligned crops whose targets are the full dump sliced at the
same frames, student frames equal to target frames, seeded offsets, whole dev utterances, and the
preflight config check (audio_compress.tasks.config.check_distill_config)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from test_dump import LENGTHS, make_data_dir
from transformers import HubertModel

from audio_compress.data.dataset import SpeechDataset
from audio_compress.dump import DumpedSpeechDataset, DumpError, TeacherDump, dump_teacher_features, frame_span
from audio_compress.frames import HOP, num_frames
from audio_compress.methods import get_method
from audio_compress.models import build_student, get_student_config
from audio_compress.tasks.config import DataConfig, check_distill_config, load_config
from audio_compress.tasks.datamodule import DistillDataModule
from audio_compress.teachers import get_config, load_teacher
from compact_ssl.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
#: every hidden state of the 4-layer tiny teacher: what both tiny_star and tiny_distil consume
LAYERS = [0, 1, 2, 3, 4]
#: 20 frames (6,480 samples): spk1-a, spk1-b, spk2-c and spk3-e are cropped, spk2-d and spk3-f are not
CROP = 6500
CROP_FRAMES = num_frames(CROP)


@pytest.fixture(scope="module")
def teacher():
    return load_teacher("tiny_hubert")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_data_dir(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def dump_dir(teacher, data_dir, tmp_path_factory):
    return dump_teacher_features(teacher, data_dir, tmp_path_factory.mktemp("dump") / "train", LAYERS,
                                 progress=False)


def test_cropped_item_is_the_full_dump_sliced_at_its_frames(data_dir, dump_dir):
    assert CROP_FRAMES == 20 and frame_span(CROP_FRAMES) == 6480
    full = DumpedSpeechDataset(data_dir, dump_dir)
    cropped = DumpedSpeechDataset(data_dir, dump_dir, crop_samples=CROP)
    dump = TeacherDump(dump_dir)
    assert cropped.lengths == [6480 if LENGTHS[u] > CROP else LENGTHS[u] for u in cropped.utt_ids]
    torch.manual_seed(0)
    starts = set()
    for _ in range(3):
        for i, utt in enumerate(cropped.utt_ids):
            item, whole = cropped[i], full[i]
            start = item["start_frame"]
            if LENGTHS[utt] <= CROP:
                assert start == 0 and torch.equal(item["wav"], whole["wav"])
                assert torch.equal(item["targets"], whole["targets"])
                continue
            starts.add(start)
            assert 0 <= start <= num_frames(LENGTHS[utt]) - CROP_FRAMES
            # the waveform starts on a frame boundary and spans exactly CROP_FRAMES frames
            assert torch.equal(item["wav"], whole["wav"][start * HOP : start * HOP + 6480])
            assert num_frames(item["wav"].shape[0]) == item["targets"].shape[1] == CROP_FRAMES
            # the targets are the stored frames start .. start + 19 of the whole utterance, bit for bit
            assert torch.equal(item["targets"], whole["targets"][:, start : start + CROP_FRAMES])
            assert torch.equal(item["targets"], dump.get(utt, as_tensor=True, start=start, count=CROP_FRAMES))
    assert len(starts) > 3  # the offsets do vary


def test_crop_start_frames_are_uniform_over_every_aligned_offset_and_seeded(data_dir, dump_dir):
    ds = DumpedSpeechDataset(data_dir, dump_dir, crop_samples=CROP)
    assert ds.crop_start_frame(CROP) is None and ds.crop_start_frame(4200) is None
    last = num_frames(20000) - CROP_FRAMES  # 41: the crop can end on the utterance's last frame
    torch.manual_seed(1)
    draws = [ds.crop_start_frame(20000) for _ in range(3000)]
    assert set(draws) == set(range(last + 1))
    torch.manual_seed(1)
    assert [ds.crop_start_frame(20000) for _ in range(3000)] == draws
    torch.manual_seed(2)
    assert [ds.crop_start_frame(20000) for _ in range(3000)] != draws


def _data_config(data_dir, dump, **overrides) -> DataConfig:
    values = dict(train=str(data_dir), dev=str(data_dir), crop_samples=CROP, dump_dir=str(dump),
                  dev_dump_dir=str(dump), max_batch_samples=16000 * 4, num_workers=0)
    values.update(overrides)
    return DataConfig(**values)


def _epoch(loader) -> list[tuple[str, int, torch.Tensor]]:
    """(utterance, samples, first target layer) of every item of one pass, in order."""
    return [(utt, int(batch.lengths[b]), batch.targets[0][b]) for batch in loader for b, utt in enumerate(batch.utt_ids)]


def test_train_loader_crops_reproducibly_under_a_seed_with_workers(data_dir, dump_dir):
    config = _data_config(data_dir, dump_dir, num_workers=2)
    runs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        runs.append(_epoch(DistillDataModule(config).train_dataloader()))
    assert len(runs[0]) == len(LENGTHS)
    for (u0, n0, t0), (u1, n1, t1) in zip(runs[0], runs[1]):
        assert (u0, n0) == (u1, n1) and torch.equal(t0, t1)
    assert all(n == 6480 for u, n, _ in runs[0] if LENGTHS[u] > CROP)
    # another seed: the same batches (the bucket order has its own seed), other crops
    assert [(u, n) for u, n, _ in runs[0]] == [(u, n) for u, n, _ in runs[2]]
    assert any(not torch.equal(a[2], b[2]) for a, b in zip(runs[0], runs[2]))


def test_dev_set_is_never_cropped(data_dir, dump_dir):
    module = DistillDataModule(_data_config(data_dir, dump_dir))
    assert module.train_dataloader().dataset.crop_samples == CROP
    loader = module.val_dataloader()
    assert loader.dataset.crop_samples is None
    dump, seen = TeacherDump(dump_dir), 0
    for batch in loader:
        for b, utt in enumerate(batch.utt_ids):
            n = LENGTHS[utt]
            assert int(batch.lengths[b]) == n
            assert torch.equal(batch.targets[0][b, : num_frames(n)], dump.get(utt, as_tensor=True)[0].float())
            seen += 1
    assert seen == len(LENGTHS)
    online = DistillDataModule(_data_config(data_dir, dump_dir, dump_dir=None, dev_dump_dir=None))
    assert online.val_dataloader().dataset.crop_samples is None
    assert isinstance(online.train_dataloader().dataset, SpeechDataset)


@pytest.mark.parametrize("method,student", [("star", "tiny_star"), ("distilhubert", "tiny_distil")])
def test_student_frames_match_cropped_targets_and_methods_train_from_them(data_dir, dump_dir, teacher, method,
                                                                          student):
    config = load_config(None, [f"method={method}", f"student={student}", "teacher=tiny_hubert",
                                f"data.crop_samples={CROP}", f"data.dump_dir={dump_dir}"])
    check_distill_config(config, use_dump=True)
    ds = DumpedSpeechDataset(data_dir, dump_dir, crop_samples=CROP)
    torch.manual_seed(0)
    batch = ds.collate([ds[i] for i in range(len(ds))])
    model = build_student(student)
    with torch.no_grad():
        out = model(batch.wavs, padding_mask=batch.padding_mask)
    assert out.hidden_states[0].shape[1] == batch.targets[0].shape[1]
    valid = (~out.padding_mask).sum(dim=1).tolist()
    assert valid == [num_frames(int(n)) for n in batch.lengths]
    assert max(valid) == CROP_FRAMES
    distill = get_method(method)(config, get_student_config(student), teacher.num_layers)
    loss = distill.compute_loss(batch, model, teacher, True, torch.Generator())["loss"]
    assert torch.isfinite(loss)


def test_cropped_waveform_gives_the_cnn_frames_of_the_whole_utterance(data_dir, dump_dir):
    """Sample-exact alignment: on a CNN without time-wide normalisation, the features of the crop
    are the whole utterance's features at the stored frames (no frame straddles a crop edge)."""
    model = HubertModel(get_config("tiny_hubert", feat_extract_norm="layer", conv_bias=True)).eval()
    ds = DumpedSpeechDataset(data_dir, dump_dir, crop_samples=CROP)
    whole = DumpedSpeechDataset(data_dir, dump_dir)
    index = ds.utt_ids.index("spk3-e")
    torch.manual_seed(3)
    item = ds[index]
    start = item["start_frame"]
    assert start > 0
    with torch.no_grad():
        crop = model.feature_extractor(item["wav"].unsqueeze(0)).transpose(1, 2)
        full = model.feature_extractor(whole[index]["wav"].unsqueeze(0)).transpose(1, 2)
    torch.testing.assert_close(crop[0], full[0, start : start + CROP_FRAMES], rtol=0, atol=1e-5)


def test_reader_slices_are_checked(dump_dir):
    dump = TeacherDump(dump_dir)
    assert dump.get("spk1-a", start=10, count=0).shape == (len(LAYERS), 0, 64)
    with pytest.raises(ValueError, match=r"frames 40\.\.59 of utterance 'spk1-a' requested.*stores 49 frames"):
        dump.get("spk1-a", start=40, count=20)


# ----------------------------------------------------------------------------- preflight


@pytest.mark.parametrize("conf", sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("egs/*/*/conf/*.yaml")
                                        if p.parts[-3] in ("star", "distilhubert", "armhubert")))
def test_shipped_distillation_configs_preflight(conf):
    """Every shipped STaR / DistilHuBERT config (the DistilHuBERT 960 h one crops to 250,000 samples)
    may train from a dump; ARMHuBERT's are refused before anything is dumped."""
    config = load_config(ROOT / conf)
    check_distill_config(config, use_dump=False, where=conf)
    if config.method == "armhubert":
        with pytest.raises(ConfigError, match=rf"^{re.escape(conf)}: armhubert needs the teacher on masked input.*"
                                              r"method=armhubert.*use_dump=true.*use_dump=false"):
            check_distill_config(config, use_dump=True, where=conf)
    else:
        check_distill_config(config, use_dump=True, where=conf)


def test_preflight_names_the_key(tmp_path):
    attn = load_config(None, ["student=tiny_star", "loss.attn_weight=0.5", "data.dump_dir=dump/train"])
    check_distill_config(load_config(None, ["student=tiny_star", "loss.attn_weight=0.5"]), use_dump=False)
    with pytest.raises(ConfigError, match=r"c\.yaml: loss\.attn_weight > 0 needs .*data\.dump_dir=dump/train"):
        check_distill_config(attn, use_dump=False, where="c.yaml")
    with pytest.raises(ConfigError, match=r"teacher_layers has 2 entries but the student has 3 layers"):
        check_distill_config(load_config(None, ["student=tiny_star", "teacher_layers=[1, 2]"]), use_dump=True)
    with pytest.raises(ConfigError, match=r"method=distilhubert, student=tiny_star: .*pred_layers"):
        check_distill_config(load_config(None, ["method=distilhubert", "student=tiny_star"]), use_dump=True)
    with pytest.raises(ConfigError, match=r"student='nope' / student_overrides: unknown student 'nope'"):
        check_distill_config(load_config(None, ["student=nope"]), use_dump=False)
    with pytest.raises(ConfigError, match=r"data: crop_samples=100 is below the 400-sample receptive field"):
        load_config(None, ["data.crop_samples=100"])


def test_dump_entry_point_refuses_before_loading_the_teacher(tmp_path, monkeypatch, capsys):
    import audio_compress.teachers
    from audio_compress.bin.dump_teacher import main

    def no_teacher(*args, **kwargs):
        raise AssertionError("the teacher must not be loaded for a refused config")

    monkeypatch.setattr(audio_compress.teachers, "load_teacher", no_teacher)
    conf = ROOT / "egs/mini_speech/armhubert/conf/distill.yaml"
    with pytest.raises(SystemExit, match=f"{re.escape(str(conf))}: armhubert needs the teacher on masked input"):
        main(["--config", str(conf), "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out")])
    assert not any(tmp_path.iterdir())


def test_dump_refusal_names_the_folder(tmp_path):
    with pytest.raises(DumpError, match=rf"teacher dump {re.escape(str(tmp_path / 'none'))} does not exist; "
                                        "rerun stage 3"):
        TeacherDump(tmp_path / "none")
