"""Mini teacher pretraining: MFCC k-means targets, the HuBERT masked-prediction loss, the exported
folder and the cache of finished teachers."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import ROOT, make_wave_data_dir
from torchaudio.compliance.kaldi import mfcc

from audio_compress.bin import pretrain_teacher as pretrain_cli
from audio_compress.data.dataset import WaveBatch
from audio_compress.frames import num_frames
from audio_compress.teachers import load_teacher
from audio_compress.teachers.pretrain import (
    ClusterTargets,
    PredictionHead,
    PretrainConfig,
    TeacherPretraining,
    TeacherPretrainTask,
    cache_key,
    fit_cluster_targets,
    hubert_loss,
    masked_prediction_loss,
    mfcc_frames,
    pretrain_teacher,
    write_initial_teacher,
)


def test_mfcc_frames_align_with_model_frames():
    wav = torch.randn(16000, generator=torch.Generator().manual_seed(0)) * 0.1
    feats = mfcc_frames(wav)
    assert feats.shape == (num_frames(16000), 39) == (49, 39)
    # frame t's static coefficients are those of the model frame's own 400-sample window
    for t in (0, 17, 48):
        alone = mfcc(wav[320 * t: 320 * t + 400].reshape(1, -1) * 32768.0, sample_frequency=16000, num_ceps=13,
                     dither=0.0, use_energy=False)
        assert torch.allclose(feats[t, :13], alone[0], atol=1e-3)
    assert mfcc_frames(torch.zeros(399)).shape == (0, 39)


def test_mfcc_cmvn_removes_a_fixed_gain():
    gen = torch.Generator().manual_seed(3)
    wav = torch.randn(16000, generator=gen) * 0.1
    # a gain of 20 dB adds a constant to every log mel band, i.e. to c0 of every frame (the DCT of a constant)
    plain, louder = mfcc_frames(wav), mfcc_frames(wav * 10.0)
    assert (louder[:, 0] - plain[:, 0]).std() < 1e-2 and (louder[:, 0] - plain[:, 0]).mean() > 1.0
    assert torch.allclose(mfcc_frames(wav * 10.0, cmvn=True), mfcc_frames(wav, cmvn=True), atol=1e-3)
    # every dimension has zero mean and unit variance over the utterance's 100 Hz frames (every second one kept)
    normalised = mfcc_frames(wav, cmvn=True)
    assert normalised.shape == (49, 39)
    assert normalised.mean(dim=0).abs().max() < 0.2 and (normalised.std(dim=0) - 1).abs().max() < 0.2


def test_kmeans_targets_recover_separated_clusters():
    gen = torch.Generator().manual_seed(1)
    centres = torch.tensor([[0.0] * 39, [10.0] * 39, [-10.0] + [5.0] * 38])
    truth = torch.arange(3).repeat_interleave(50)
    points = centres[truth] + 0.1 * torch.randn(150, 39, generator=gen)
    codebook = fit_cluster_targets(points, num_clusters=3, seed=0)
    assert torch.allclose(codebook.mean, points.mean(dim=0), atol=1e-5)
    assert torch.allclose(codebook.std, points.double().std(dim=0).float(), atol=1e-5)
    ids = codebook.assign(points)
    # the same partition as the truth (cluster numbering is arbitrary)
    mapping = {int(t): int(i) for t, i in zip(truth, ids)}
    assert len(set(mapping.values())) == 3
    assert torch.equal(ids, torch.tensor([mapping[int(t)] for t in truth]))
    # a new point near the second centre gets that centre's id
    assert int(codebook.assign(centres[1:2] + 0.05)) == mapping[1]
    with pytest.raises(ValueError, match="at least 5 frames"):
        fit_cluster_targets(points[:4], num_clusters=5, seed=0)


def test_masked_prediction_loss_counts_only_masked_frames():
    logits = torch.tensor([[[0.0, math.log(3.0)], [7.0, -7.0], [0.0, math.log(2.0)]]])
    targets = torch.tensor([[1, 1, 0]])
    mask = torch.tensor([[True, False, True]])
    loss, acc = masked_prediction_loss(logits, targets, mask)
    # frame 0: -log(3/4) (right); frame 2: -log(1/3) (wrong); frame 1 (unmasked, badly wrong) does not count
    assert loss.item() == pytest.approx((math.log(4 / 3) + math.log(3)) / 2, abs=1e-6)
    assert acc.item() == pytest.approx(0.5)
    changed = logits.clone()
    changed[0, 1] = torch.tensor([-50.0, 50.0])
    assert masked_prediction_loss(changed, targets, mask)[0].item() == pytest.approx(loss.item(), abs=1e-6)
    assert masked_prediction_loss(logits, targets, torch.zeros_like(mask))[0].item() == 0.0


def test_hubert_loss_adds_the_weighted_unmasked_frames():
    logits = torch.tensor([[[0.0, math.log(3.0)], [0.0, math.log(2.0)], [9.0, -9.0], [0.0, 0.0]]])
    targets = torch.tensor([[1, 1, 0, 1]])
    mask = torch.tensor([[True, False, False, True]])
    valid = torch.tensor([[True, True, True, False]])  # frame 3 is padding: it counts nowhere
    masked = math.log(4 / 3)  # frame 0 only
    unmasked = (math.log(3 / 2) + math.log(1 + math.exp(-18.0))) / 2  # frames 1 and 2
    loss, stats = hubert_loss(logits, targets, mask, valid)
    assert loss.item() == pytest.approx(masked, abs=1e-6) and set(stats) == {"masked_acc"}
    loss, stats = hubert_loss(logits, targets, mask, valid, unmasked_weight=0.5)
    assert loss.item() == pytest.approx(masked + 0.5 * unmasked, abs=1e-6)
    assert stats["masked_acc"].item() == 1.0 and stats["unmasked_acc"].item() == 1.0


def test_prediction_head_logits_are_cosines_over_temperature():
    head = PredictionHead(hidden_size=2, proj_dim=2, num_clusters=3, temperature=0.1)
    with torch.no_grad():
        head.final_proj.weight.copy_(torch.eye(2) * 3.0)
        head.final_proj.bias.zero_()
        head.label_embs.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]]))
    logits = head(torch.tensor([[[1.0, 0.0]]]))
    # cosines 1, 0, -1/sqrt(2), divided by 0.1
    assert torch.allclose(logits[0, 0], torch.tensor([10.0, 0.0, -10.0 / math.sqrt(2)]), atol=1e-5)


def _overrides(data: Path, steps: int = 3) -> list[str]:
    return [
        f"data.train={data}", f"data.dev={data}", "data.num_workers=0", "data.max_batch_samples=64000",
        "targets.num_clusters=4", f"trainer.max_steps={steps}", "trainer.val_every_n_steps=3",
        "trainer.ckpt_every_n_steps=3", "trainer.log_every_n_steps=1", "trainer.precision=32-true",
        "trainer.accelerator=cpu",
    ]


def _config(data: Path, steps: int = 3) -> PretrainConfig:
    return PretrainConfig.load(None, _overrides(data, steps))


def test_pretrain_exports_a_loadable_teacher_and_reuses_the_cache(tmp_path, monkeypatch):
    data = make_wave_data_dir(tmp_path / "data", num_utts=6, seed=0)
    config = _config(data)
    teacher_dir = pretrain_teacher(config, tmp_path / "teachers")
    assert teacher_dir.parent.parent == tmp_path / "teachers" and teacher_dir.parent.name == cache_key(config)
    teacher = load_teacher(teacher_dir)
    assert (teacher.model_type, teacher.num_layers, teacher.hidden_size) == ("hubert", 4, 64)
    assert teacher.has_mask_embedding
    random = load_teacher("mini_hubert", seed=0)
    assert not torch.equal(teacher.model.encoder.layers[0].attention.k_proj.weight,
                           random.model.encoder.layers[0].attention.k_proj.weight)
    assert torch.load(teacher_dir.parent / "kmeans.pt", weights_only=True)["centroids"].shape == (4, 39)

    # the same data and config: the cached teacher, no training (setup would build the model)
    def no_training(self, config, rundir):
        raise AssertionError("the cached teacher was retrained")

    monkeypatch.setattr(TeacherPretraining, "setup", no_training)
    mtime = (teacher_dir / "config.json").stat().st_mtime_ns
    assert pretrain_teacher(_config(data), tmp_path / "teachers") == teacher_dir
    assert (teacher_dir / "config.json").stat().st_mtime_ns == mtime
    # the key follows the audio content and the weight-relevant config, not paths or worker counts
    copy = tmp_path / "copy"
    make_wave_data_dir(copy, num_utts=6, seed=0)
    assert cache_key(_config(copy)) == cache_key(config)
    assert cache_key(PretrainConfig.load(None, [f"data.train={data}", f"data.dev={data}", "data.num_workers=3",
                                                "targets.num_clusters=4", "trainer.max_steps=3",
                                                "data.max_batch_samples=64000", "trainer.val_every_n_steps=3",
                                                "trainer.ckpt_every_n_steps=3", "trainer.log_every_n_steps=7",
                                                "trainer.precision=32-true", "trainer.accelerator=cpu"])) \
        == cache_key(config)
    assert cache_key(_config(data, steps=4)) != cache_key(config)
    make_wave_data_dir(tmp_path / "other", num_utts=6, seed=1)
    assert cache_key(_config(tmp_path / "other")) != cache_key(config)


def test_the_initial_teacher_is_the_model_pretraining_starts_from(tmp_path, capsys):
    """``--initial`` writes the benchmark's random teacher: the first iteration's model before its first step
    (the runner's seeding, the k-means set-up in between), with the architecture overrides, the filterbank and
    the deltas start of the config; a second seed changes the Transformer only."""
    data = make_wave_data_dir(tmp_path / "data", num_utts=6, seed=0)
    wide = ROOT / "egs/mini_speech/conf/pretrain_teacher_wide.yaml"
    overrides = _overrides(data)
    L.seed_everything(0)
    start = TeacherPretraining().setup(PretrainConfig.load(wide, overrides), tmp_path / "run").module.model.state_dict()
    rng = torch.get_rng_state()
    assert pretrain_cli.main(["--config", str(wide), "--cache_root", str(tmp_path / "teachers"), "--initial",
                              "--out", str(tmp_path / "initial"), *(f"--set={o}" for o in overrides)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(tmp_path / "initial")
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's generator is left as it was
    assert not (tmp_path / "teachers").exists()  # nothing trained, nothing cached
    initial = load_teacher(tmp_path / "initial")
    assert initial.hidden_size == 128 and initial.model.config.intermediate_size == 512
    written = initial.model.state_dict()
    assert written.keys() == start.keys() and all(torch.equal(written[k], start[k]) for k in start)
    # another seed: the same frozen filterbank and deltas start, another random Transformer
    write_initial_teacher(PretrainConfig.load(wide, [*overrides, "trainer.seed=1"]), tmp_path / "seed1")
    other = load_teacher(tmp_path / "seed1").model.state_dict()
    same = {k for k in start if torch.equal(other[k], start[k])}
    assert {k for k in start if k.startswith("feature_extractor.")} <= same
    assert "encoder.layers.0.attention.k_proj.weight" not in same
    with pytest.raises(SystemExit) as exit_info:
        pretrain_cli.main(["--config", str(wide), "--cache_root", str(tmp_path), "--initial"])
    assert exit_info.value.code == 2 and "give --out DIR" in capsys.readouterr().err
    # an --out that is a file is refused and kept (a staged folder replaces only a folder)
    (tmp_path / "notes.txt").write_text("mine")
    assert pretrain_cli.main(["--config", str(wide), "--cache_root", str(tmp_path), "--initial",
                              "--out", str(tmp_path / "notes.txt")]) == 1
    assert f"{tmp_path / 'notes.txt'} is a file, not a folder" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_pretraining_resumes_with_its_mask_generators(tmp_path):
    data = make_wave_data_dir(tmp_path / "data", num_utts=6, seed=0)
    run = TeacherPretraining()
    first = run.run(_config(data, steps=3), tmp_path / "run")
    assert first["steps"] == 3
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert set(ckpt["random_state"]["generators"]) == {"_mask_generator", "_val_generator"}
    # more steps on the same run: continues from step 3 with the saved generator states
    assert run.run(_config(data, steps=5), tmp_path / "run", resume="force")["steps"] == 5


def test_second_iteration_clusters_the_first_teachers_layer(tmp_path, monkeypatch):
    """HuBERT's second iteration: the first iteration is the cached one-iteration teacher, and the second one's
    targets are the k-means ids of the first teacher's hidden state ``targets.layer``."""
    data = make_wave_data_dir(tmp_path / "data", num_utts=6, seed=0)
    first = pretrain_teacher(_config(data), tmp_path / "teachers")
    two = PretrainConfig.load(None, [*_overrides(data), "targets.iterations=2", "targets.layer=1"])
    # the first iteration of a two-iteration config is the one-iteration run: `layer` is not part of its key
    assert cache_key(PretrainConfig.load(None, [*_overrides(data), "targets.layer=3"])) == first.parent.name
    trained = []
    setup = TeacherPretraining.setup
    monkeypatch.setattr(TeacherPretraining, "setup",
                        lambda self, config, rundir: trained.append((self.previous, rundir)) or setup(self, config, rundir))
    second = pretrain_teacher(two, tmp_path / "teachers")
    assert trained == [(first, second.parent)] and second.parent.name == cache_key(two) != first.parent.name
    codebook = ClusterTargets.from_dict(torch.load(second.parent / "kmeans.pt", weights_only=True))
    assert codebook.centroids.shape == (4, 64)  # the teacher's width, not the 39 MFCC dims

    previous = load_teacher(first)
    task = TeacherPretrainTask(two, codebook, previous)
    wavs = torch.randn(2, 8000, generator=torch.Generator().manual_seed(3)) * 0.1
    lengths = torch.tensor([8000, 5000])
    padding = torch.arange(8000)[None] >= lengths[:, None]
    batch = WaveBatch(wavs.masked_fill(padding, 0.0), padding, lengths, ["a", "b"])
    targets = task.frame_targets(batch, num_frames(8000))
    for row, n in enumerate(lengths.tolist()):
        # each row's targets are those of its utterance alone: the padding of the batch changes nothing
        alone = previous(wavs[row, :n]).hidden_states[1][0]
        assert alone.shape == (num_frames(n), 64)
        assert torch.equal(targets[row, :num_frames(n)], codebook.assign(alone))
        assert (targets[row, num_frames(n):] == -100).all()


def _two_utterances(tmp_path: Path) -> tuple[Path, ClusterTargets, torch.Tensor, torch.Tensor, torch.Tensor, WaveBatch]:
    """A 2-utterance data dir, a 7-cluster codebook, and a padded batch of two waves ("a": 8000 samples, "b":
    5000): ``(data, codebook, wavs, lengths, padding, batch)``."""
    data = make_wave_data_dir(tmp_path / "data", num_utts=2, seed=0)
    codebook = ClusterTargets(torch.zeros(39), torch.ones(39), torch.randn(7, 39, generator=torch.Generator().manual_seed(0)))
    wavs = torch.randn(2, 8000, generator=torch.Generator().manual_seed(3)) * 0.1
    lengths = torch.tensor([8000, 5000])
    padding = torch.arange(8000)[None] >= lengths[:, None]
    return data, codebook, wavs, lengths, padding, WaveBatch(wavs.masked_fill(padding, 0.0), padding, lengths, ["a", "b"])


def test_whole_utterances_keep_their_targets_and_crops_do_not(tmp_path, monkeypatch):
    """Targets of a whole utterance are computed at its first batch and reused (equal to a fresh computation,
    whatever the batch's padding); with ``data.crop_samples`` every batch computes them again."""
    data, codebook, wavs, lengths, padding, batch = _two_utterances(tmp_path)
    expected = [codebook.assign(mfcc_frames(wavs[row, :n])) for row, n in enumerate(lengths.tolist())]

    import audio_compress.teachers.pretrain.task as task_module

    calls = []  # the samples of every MFCC computation
    monkeypatch.setattr(task_module, "mfcc_frames", lambda wav, cmvn=False: calls.append(wav.numel()) or mfcc_frames(wav, cmvn))
    task = TeacherPretrainTask(_config(data), codebook)
    first = task.frame_targets(batch, num_frames(8000))
    assert calls == [8000, 5000]
    # "b" again, alone and so unpadded, then beside "a": no new computation, the same ids
    alone = WaveBatch(wavs[1:, :5000], torch.zeros(1, 5000, dtype=torch.bool), lengths[1:], ["b"])
    assert torch.equal(task.frame_targets(alone, num_frames(5000))[0], expected[1])
    assert torch.equal(task.frame_targets(batch, num_frames(8000)), first)
    assert calls == [8000, 5000]
    for row, n in enumerate(lengths.tolist()):
        assert torch.equal(first[row, :num_frames(n)], expected[row]) and (first[row, num_frames(n):] == -100).all()
    # the same id at another length (another crop or file) is another entry
    task.frame_targets(WaveBatch(wavs[:1, :6000], torch.zeros(1, 6000, dtype=torch.bool), torch.tensor([6000]), ["a"]),
                       num_frames(6000))
    assert calls == [8000, 5000, 6000]
    # validation keeps its own: a dev dir may reuse a training utterance id
    task.eval()
    task.frame_targets(alone, num_frames(5000))
    assert calls == [8000, 5000, 6000, 5000]

    calls.clear()
    cropped = TeacherPretrainTask(PretrainConfig.load(None, [*_overrides(data), "data.crop_samples=8000"]), codebook)
    for _ in range(2):
        assert torch.equal(cropped.frame_targets(batch, num_frames(8000)), first)
    assert calls == [8000, 5000, 8000, 5000]


@pytest.mark.parametrize("override,message", [("targets.iterations=0", "at least 1"),
                                              ("targets.layer=5", r"hidden state of mini_hubert \(0 to 4\)")])
def test_iteration_settings_are_checked_when_the_config_loads(tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        PretrainConfig.load(None, [*_overrides(tmp_path), "targets.iterations=2", override])


def test_a_misspelt_architecture_override_is_refused_with_the_field_it_meant(tmp_path):
    """transformers keeps an unknown config key as a bare attribute, so a typo would silently train with the
    default; the config refuses it as it loads and names the field it resembles."""
    from audio_compress.teachers.configs import get_config

    with pytest.raises(KeyError, match=r"mini_hubert_fb: no config field 'hiden_dropout' \(did you mean 'hidden_dropout'\?\)"):
        get_config("mini_hubert_fb", hiden_dropout=0.0)
    with pytest.raises(ValueError, match=r"no config field 'hiden_dropout'.*HubertConfig"):
        PretrainConfig.load(None, [*_overrides(tmp_path), "architecture_overrides.hiden_dropout=0.0"])
    assert get_config("mini_hubert_fb", hidden_dropout=0.0).hidden_dropout == 0.0


@pytest.mark.parametrize("override", ["hidden_dropout=2", "attention_dropout=-0.1", "layerdrop=1.5",
                                      "mask_time_prob=yes"])
def test_a_probability_outside_0_to_1_is_refused_when_the_config_loads(tmp_path, override):
    """transformers takes any dropout; torch refuses it only when the model is built, after k-means. The config
    refuses it as it loads (a recipe's preflight), naming the field."""
    from audio_compress.teachers.configs import get_config

    key = override.split("=")[0]
    with pytest.raises(ValueError, match=rf"mini_hubert_fb: {key}=.*a probability, it must be a number from 0 to 1"):
        PretrainConfig.load(None, [*_overrides(tmp_path), "architecture=mini_hubert_fb",
                                   f"architecture_overrides.{override}"])
    # the ends of the range are probabilities too
    assert get_config("mini_hubert_fb", hidden_dropout=0, layerdrop=1.0).layerdrop == 1.0


def test_a_frozen_front_end_is_computed_once_per_batch_and_its_loss_is_unchanged(tmp_path):
    """With a frozen front end and no crops, a batch seen again reuses the front end's output (the
    convolutions run once per batch and padded length), and the loss is bit for bit the one without keeping;
    a learnt front end, or crops, run it every time."""
    data, codebook, wavs, lengths, padding, batch = _two_utterances(tmp_path)
    frozen = ["architecture=mini_hubert_fb", "frontend=filterbank", "freeze_frontend=true",
              "architecture_overrides.hidden_dropout=0.0", "architecture_overrides.attention_dropout=0.0",
              "architecture_overrides.feat_proj_dropout=0.0", "architecture_overrides.activation_dropout=0.0"]

    def task_and_calls(*extra: str) -> tuple[TeacherPretrainTask, list[int]]:
        torch.manual_seed(0)
        task = TeacherPretrainTask(PretrainConfig.load(None, [*_overrides(data), *frozen, *extra]), codebook)
        calls: list[int] = []  # the batch size of every run of the front end's first convolution
        task.model.feature_extractor.conv_layers[0].register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
        return task, calls

    def loss(task: TeacherPretrainTask, b: WaveBatch, seed: int = 0) -> torch.Tensor:
        return task.compute_loss(b, torch.Generator().manual_seed(seed))["loss"]

    task, calls = task_and_calls()
    first = loss(task, batch)
    assert calls == [2]
    assert torch.equal(loss(task, batch), first) and calls == [2]
    # another padded length or other utterances: another entry; validation keeps its own
    longer = WaveBatch(torch.nn.functional.pad(batch.wavs, (0, 800)), torch.nn.functional.pad(padding, (0, 800), value=True),
                       lengths, ["a", "b"])
    alone = WaveBatch(wavs[1:, :5000], torch.zeros(1, 5000, dtype=torch.bool), lengths[1:], ["b"])
    loss(task, longer), loss(task, alone), loss(task, alone)
    assert calls == [2, 2, 1]
    task.eval()
    loss(task, batch)
    assert calls == [2, 2, 1, 2]
    # the same masks, the same weights: what the kept output gives equals what the front end computes
    plain, plain_calls = task_and_calls("data.crop_samples=8000")
    assert torch.equal(loss(plain, batch), first) and torch.equal(loss(plain, batch), first)
    assert plain_calls == [2, 2]
    learnt, learnt_calls = task_and_calls("freeze_frontend=false")
    loss(learnt, batch), loss(learnt, batch)
    assert learnt_calls == [2, 2]
