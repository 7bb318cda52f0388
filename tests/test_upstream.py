"""s3prl plumbing: compatibility shims, run-time registration, S3PRLUpstream and Featurizer."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from audio_compress.frames import num_frames
from audio_compress.models import build_student, save_student
from audio_compress.teachers import load_teacher, save_teacher
from audio_compress.upstream import compat, register, registered_names


@pytest.fixture(scope="module")
def hub():
    names = register()
    import s3prl.hub

    assert set(names) == {"ssl_teacher_local", "star_local", "armhubert_local", "distilhubert_local"}
    return s3prl.hub


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    return save_teacher(load_teacher("tiny_hubert", seed=3), tmp_path_factory.mktemp("t") / "teacher")


def test_registration_is_visible_to_s3prl(hub):
    from s3prl.nn import S3PRLUpstream

    assert set(registered_names()) <= set(hub.options())
    assert not set(registered_names()) & set(hub.options(only_registered_ckpt=True))  # *_local are hidden there
    assert set(registered_names()) <= set(S3PRLUpstream.available_names())
    assert register() == registered_names()  # idempotent


def test_s3prl_upstream_and_featurizer_on_teacher(hub, teacher_dir):
    from s3prl.nn import Featurizer, S3PRLUpstream

    upstream = S3PRLUpstream("ssl_teacher_local", path_or_url=str(teacher_dir)).eval()
    wavs = torch.randn(3, 32000)
    lens = torch.tensor([32000, 20000, 16000])
    with torch.no_grad():
        states, state_lens = upstream(wavs, lens)
    assert len(states) == 5  # input of layer 1 + 4 layers
    assert all(s.shape[0] == 3 and s.shape[-1] == 64 for s in states)
    assert abs(states[0].shape[1] - num_frames(32000)) <= 1
    assert upstream.downsample_rates == [320] * 5
    featurizer = Featurizer(upstream)
    feats, feat_lens = featurizer(states, state_lens)
    assert feats.shape == (3, states[0].shape[1], 64)
    assert featurizer.output_size == 64
    assert feat_lens.tolist() == state_lens[0].tolist()


def test_legacy_hub_call_contract(hub, teacher_dir):
    """The legacy runner calls hub.<name>(ckpt=..., model_config=..., refresh=...) and reads
    get_downsample_rates; outputs follow the frame formula, short clips still give one frame."""
    expert = hub.ssl_teacher_local(ckpt=str(teacher_dir), model_config=None, refresh=False)
    assert expert.get_downsample_rates("hidden_states") == 320
    with torch.no_grad():
        out = expert([torch.randn(16000), torch.randn(300)])
    assert len(out["hidden_states"]) == 5
    assert out["hidden_states"][0].shape == (2, num_frames(16000), 64)
    assert torch.equal(out["last_hidden_state"], out["hidden_states"][-1])


@pytest.mark.parametrize("name,entry,count,width", [
    ("tiny_star", "star_local", 3, 64), ("tiny_arm", "armhubert_local", 4, 64), ("tiny_distil", "distilhubert_local", 6, 64),
])
def test_student_entries(hub, tmp_path, name, entry, count, width):
    from s3prl.nn import S3PRLUpstream

    path = save_student(build_student(name), tmp_path / f"{name}.pt")
    upstream = S3PRLUpstream(entry, path_or_url=str(path)).eval()
    with torch.no_grad():
        states, _ = upstream(torch.randn(2, 16000), torch.tensor([16000, 9000]))
    # S3PRLUpstream pads our floor((L-400)/320)+1 = 49 frames to len(range(0, L, 320)) = 50
    assert len(states) == count and all(s.shape == (2, 50, width) for s in states)


def test_missing_checkpoint_is_a_clear_error(hub):
    with pytest.raises(ValueError, match="needs an exported student checkpoint"):
        hub.star_local(ckpt=None)


def test_sox_effects_shim(tmp_path):
    compat.apply()
    import torchaudio
    from torchaudio.sox_effects import apply_effects_file, apply_effects_tensor

    stereo = np.stack([np.full(8000, 0.5), np.full(8000, 0.25)], axis=1).astype(np.float32)
    path = tmp_path / "s.wav"
    sf.write(str(path), stereo, 8000)
    wav, sr = apply_effects_file(str(path), [["channels", "1"], ["rate", "16000"], ["gain", "-6.0"]])
    assert sr == 16000 and wav.shape[0] == 1 and abs(wav.shape[1] - 16000) <= 1
    assert torch.allclose(wav[0, 100:-100], torch.tensor(0.375 * 10 ** (-6 / 20)), atol=2e-3)
    x = torch.tensor([[0.1, -0.5, 0.25]])
    y, _ = apply_effects_tensor(x, 16000, [["norm"]])
    assert torch.isclose(y.abs().max(), torch.tensor(1.0))
    with pytest.raises(compat.SoxEffectError, match="'reverb' is not supported"):
        apply_effects_tensor(x, 16000, [["reverb", "50"]])
    loaded, sr = torchaudio.load(str(path))
    assert sr == 8000 and loaded.shape == (2, 8000)
    assert torchaudio.info(str(path)).num_frames == 8000


def test_hub_and_torch_load_shims():
    compat.apply()
    import argparse

    import huggingface_hub

    assert hasattr(huggingface_hub, "HfFolder") and hasattr(huggingface_hub.HfFolder, "get_token")
    with pytest.raises(RuntimeError, match="no longer exists"):
        huggingface_hub.Repository("x")
    import io

    buf = io.BytesIO()
    torch.save({"Args": argparse.Namespace(lr=1.0)}, buf)
    buf.seek(0)
    assert torch.load(buf)["Args"].lr == 1.0  # weights_only default of torch >= 2.6
