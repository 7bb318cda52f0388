"""The speech distillation method registry (audio_compress.methods): lookup, teacher layers,
config checks, losses on a tiny batch and the typed dumped-batch check."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from audio_compress.data.dataset import WaveBatch
from audio_compress.dump import DumpBatch
from audio_compress.methods import METHODS, ARMHuBERT, DistilHuBERT, DistillMethod, STaR, get_method
from audio_compress.models import build_student, get_student_config
from audio_compress.tasks.config import METHODS as CONFIG_METHODS
from audio_compress.tasks.config import load_config
from audio_compress.teachers import load_teacher

ROOT = Path(__file__).resolve().parents[1]
#: a tiny student for every registered method (a new method adds its own here)
TINY_STUDENT = {"star": "tiny_star", "armhubert": "tiny_arm", "distilhubert": "tiny_distil"}


@pytest.fixture(scope="module")
def teacher():
    return load_teacher("tiny_hubert")


@pytest.fixture(scope="module")
def batch() -> WaveBatch:
    """Two utterances (0.5 s and 0.35 s, right-padded)."""
    lengths = torch.tensor([8000, 5600])
    padding_mask = torch.arange(8000).unsqueeze(0) >= lengths.unsqueeze(1)
    wavs = (0.1 * torch.randn(2, 8000, generator=torch.Generator().manual_seed(0))).masked_fill(padding_mask, 0.0)
    return WaveBatch(wavs, padding_mask, lengths, ["a", "b"])


def _config(method: str, *overrides: str):
    return load_config(None, [f"method={method}", f"student={TINY_STUDENT[method]}", "teacher=tiny_hubert", *overrides])


def _method(config, teacher) -> DistillMethod:
    student = get_student_config(config.student, **config.student_overrides)
    return get_method(config.method)(config, student, teacher.num_layers)


def _dumped(batch: WaveBatch, teacher, layers: list[int]) -> DumpBatch:
    """``batch`` with the teacher's hidden states ``layers`` as dumped targets."""
    with torch.no_grad():
        states = teacher(batch.wavs, padding_mask=batch.padding_mask).hidden_states
    return DumpBatch(batch.wavs, batch.padding_mask, batch.lengths, batch.utt_ids,
                     [states[layer].clone() for layer in layers], list(layers))


class _NoTeacher(torch.nn.Module):
    """Stands in for the teacher where a dump must serve the targets."""

    def forward(self, *args, **kwargs):
        raise AssertionError("the online teacher ran although the batch holds dumped targets")


def test_registry_lists_every_method_in_config_order():
    assert CONFIG_METHODS == tuple(METHODS) == ("star", "armhubert", "distilhubert")
    assert METHODS == {"star": STaR, "armhubert": ARMHuBERT, "distilhubert": DistilHuBERT}
    assert all(get_method(name).name == name for name in METHODS)
    assert set(TINY_STUDENT) == set(METHODS)
    assert {name: cls.upstream for name, cls in METHODS.items()} == {
        "star": "star_local", "armhubert": "armhubert_local", "distilhubert": "distilhubert_local"}


def test_unknown_method_names_the_choices():
    choices = re.escape("('star', 'armhubert', 'distilhubert')")
    with pytest.raises(ValueError, match=f"unknown method 'fitnet'; choose one of {choices}"):
        get_method("fitnet")


def test_config_stays_free_of_model_imports():
    code = ("import sys, audio_compress.tasks.config; "
            "print(sorted(m for m in sys.modules if m.startswith(('audio_compress.models', 'audio_compress.teachers', "
            "'audio_compress.tasks.distill'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"


def test_teacher_layers_and_layer_map(teacher):
    star = _method(_config("star"), teacher)  # 3 student layers, 4 teacher layers
    assert (star.layer_map, star.teacher_layers()) == ([1, 3, 4], [0, 1, 3, 4])
    arm = _method(_config("armhubert"), teacher)  # 4 and 4: 1:1
    assert arm.layer_map == arm.teacher_layers() == [1, 2, 3, 4]
    assert _method(_config("star", "teacher_layers=[2, 2, 4]"), teacher).teacher_layers() == [0, 2, 2, 4]
    assert _method(_config("distilhubert", "student_overrides={pred_layers: [4]}"), teacher).teacher_layers() == [4]
    with pytest.raises(ValueError, match="teacher_layers has 2 entries but the student has 3 layers"):
        _method(_config("star", "teacher_layers=[2, 4]"), teacher)
    headless = load_config(None, ["method=distilhubert", "student=tiny_star", "teacher=tiny_hubert"])
    with pytest.raises(ValueError, match="student 'tiny_star' has no prediction heads"):
        _method(headless, teacher)


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_gives_a_finite_loss_on_a_tiny_batch(name, teacher, batch):
    config = _config(name)
    method = _method(config, teacher)
    method.check(teacher.hidden_size)
    torch.manual_seed(0)
    student = build_student(config.student, **config.student_overrides)
    for train in (True, False):
        losses = method.compute_loss(batch, student, teacher, train, torch.Generator().manual_seed(0))
        assert set(losses) >= {"loss"} and all(torch.isfinite(v).all() for v in losses.values())
        assert losses["loss"].dim() == 0 and losses["loss"] > 0
    losses["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def test_armhubert_masks_come_from_the_given_generator(teacher, batch):
    config = _config("armhubert")
    method = _method(config, teacher)
    student = build_student(config.student).eval()  # no dropout: only the span mask is random
    generator = torch.Generator().manual_seed(3)
    state = generator.get_state()
    first = method.compute_loss(batch, student, teacher, True, generator)["loss"]
    second = method.compute_loss(batch, student, teacher, True, generator)["loss"]
    generator.set_state(state)
    again = method.compute_loss(batch, student, teacher, True, generator)["loss"]
    assert torch.equal(first, again) and not torch.equal(first, second)


@pytest.mark.parametrize("name", ["star", "distilhubert"])
def test_dumped_batch_serves_targets_without_the_teacher(name, teacher, batch):
    config = _config(name)
    method = _method(config, teacher)
    student = build_student(config.student).eval()
    dumped = _dumped(batch, teacher, [4, 3, 2, 1, 0])  # every layer, in another order than needed
    with torch.no_grad():
        online = method.compute_loss(batch, student, teacher, False, torch.Generator())
        offline = method.compute_loss(dumped, student, _NoTeacher(), False, torch.Generator())
    torch.testing.assert_close(offline, online)


def test_dumped_batch_without_a_needed_layer_is_refused(teacher, batch):
    method = _method(_config("star"), teacher)
    student = build_student("tiny_star")
    message = "the feature dump lacks teacher layers [3, 4] (has [0, 1]); re-run the dump"
    with pytest.raises(ValueError, match=re.escape(message)):
        method.compute_loss(_dumped(batch, teacher, [0, 1]), student, _NoTeacher(), False, torch.Generator())


@pytest.mark.parametrize("name,overrides,reason", [
    ("armhubert", [], "armhubert needs the teacher on masked input at every step; a feature dump cannot provide it"),
    ("star", ["loss.attn_weight=0.5"],
     "loss.attn_weight > 0 needs the teacher's attention maps; a feature dump has none"),
])
def test_online_only_configurations_refuse_dumps(name, overrides, reason, teacher, batch):
    config = _config(name, *overrides)
    method = _method(config, teacher)
    assert method.dump_refusal() == reason
    method.check(teacher.hidden_size)  # no dump configured
    for data in (replace(config.data, dump_dir="dump/train"), replace(config.data, dev_dump_dir="dump/dev")):
        with pytest.raises(ValueError, match=re.escape(reason)):
            _method(replace(config, data=data), teacher).check(teacher.hidden_size)
    student = build_student(config.student)
    dumped = _dumped(batch, teacher, method.teacher_layers())
    with pytest.raises(ValueError, match=re.escape(reason)):
        method.compute_loss(dumped, student, teacher, False, torch.Generator())
    # a dump is told apart by its type, not by what attributes a batch happens to have
    look_alike = WaveBatch(batch.wavs, batch.padding_mask, batch.lengths, batch.utt_ids)
    look_alike.targets = [torch.zeros(2, 24, 64)]
    assert torch.isfinite(method.compute_loss(look_alike, student, teacher, False, torch.Generator())["loss"])
    assert _method(_config("star"), teacher).dump_refusal() is None


def test_armhubert_projection_width_must_match_the_teacher(teacher):
    method = _method(_config("armhubert", "student_overrides={proj_dim: 32}"), teacher)
    with pytest.raises(ValueError, match="student 'tiny_arm' has proj_dim=32 but the teacher is 64 wide; "
                                         "set student_overrides.proj_dim: 64"):
        method.check(teacher.hidden_size)


def test_dump_entry_point_takes_layers_from_the_method(tmp_path):
    from audio_compress.bin.dump_teacher import layers_from_config

    conf = tmp_path / "c.yaml"
    conf.write_text("method: star\nstudent: tiny_star\n")
    assert layers_from_config(str(conf), 4) == [0, 1, 3, 4]
    conf.write_text("method: armhubert\nstudent: tiny_arm\n")
    with pytest.raises(SystemExit, match=f"{conf}: armhubert needs the teacher on masked input"):
        layers_from_config(str(conf), 4)
