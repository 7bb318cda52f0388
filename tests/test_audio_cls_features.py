"""Features: Kaldi fbank with AST normalization, SpecAugment, and the on-disk cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_audio_cls_data import ICBHI_SAMPLES, needs_icbhi
from torchaudio.compliance import kaldi

from audio_cls.data import make_mini_icbhi, prepare_icbhi, write_manifest
from audio_cls.data.cycles import cycle_waves, load_recording
from audio_cls.features import (
    AUDIOSET_MEAN,
    AUDIOSET_STD,
    FeatureConfig,
    SpecAugConfig,
    SpecAugment,
    build_feature_cache,
    cache_dir_for,
    fbank,
    load_feature_cache,
)


def test_fbank_shape_and_ast_normalization():
    config = FeatureConfig()
    assert config.num_samples == 128000 and config.num_frames == 798
    wave = torch.randn(128000) * 0.1
    feats = fbank(wave, config)
    assert feats.shape == (798, 128)
    raw = kaldi.fbank(wave[None], htk_compat=True, sample_frequency=16000, use_energy=False, window_type="hanning",
                      num_mel_bins=128, dither=0.0, frame_shift=10)
    torch.testing.assert_close(feats, (raw + 4.2677393) / (2 * 4.5689974))
    assert (AUDIOSET_MEAN, AUDIOSET_STD) == (-4.2677393, 4.5689974)
    assert FeatureConfig(desired_length=2.0).num_frames == 198


def test_specaugment_masks():
    torch.manual_seed(0)
    spec = torch.arange(798 * 128, dtype=torch.float32).reshape(798, 128)
    mean = spec.mean()
    assert SpecAugment(SpecAugConfig(prob=0.0))(spec) is spec
    for _ in range(20):
        out = SpecAugment(SpecAugConfig(prob=1.0))(spec)
        masked = out != spec
        assert torch.all(out[masked] == mean)
        cols = masked.all(dim=0).sum().item()  # frequency bins masked over all frames
        rows = masked.all(dim=1).sum().item()  # frames masked over all bins
        assert cols <= 2 * 47 and rows <= 2 * 159
        # every masked cell lies in a fully masked frequency band or time span
        assert torch.equal(masked, masked.all(dim=0, keepdim=True) | masked.all(dim=1, keepdim=True))
    zero = SpecAugment(SpecAugConfig(prob=1.0, mask_value="zero", time_mask=1, freq_mask=48))
    torch.manual_seed(3)
    out = zero(spec + 1)
    assert ((out == 0) == (out != spec + 1)).all() and (out == 0).any()
    small = torch.zeros(20, 8)
    hits = sum(SpecAugment(SpecAugConfig())(small) is not small for _ in range(2000))
    assert abs(hits / 2000 - 0.8413) < 0.03  # the reference's gate probability


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    root = tmp_path_factory.mktemp("feat")
    mini = make_mini_icbhi(root / "corpus", seed=1, num_recordings=5)
    corpus = prepare_icbhi(mini.root)
    paths = {}
    for split, records in corpus.cycles.items():
        paths[split] = root / "data" / split / "cycles.tsv"
        write_manifest(records, paths[split])
    return root, paths, corpus


def test_cache_matches_on_the_fly_features_and_is_keyed(manifests):
    root, paths, corpus = manifests
    config = FeatureConfig(desired_length=2.0)
    path = build_feature_cache(paths["train"], config, root / "cache", progress=False)
    cache = load_feature_cache(path)
    records = corpus.cycles["train"]
    assert cache.feats.shape == (len(records), 198, 128) and cache.ids == [r.id for r in records]
    assert cache.labels.tolist() == [r.label for r in records]
    first = [r for r in records if r.audio == records[0].audio]
    wave = load_recording(first[0].audio)
    expected = [fbank(w, config) for w in cycle_waves(wave, 16000, [(r.start, r.end) for r in first], 32000)]
    for i, feat in enumerate(expected):
        np.testing.assert_array_equal(cache.feats[i], feat.numpy())
    # same config and manifest: reused; another config: a new cache
    mtime = (path / "feats.npy").stat().st_mtime_ns
    again = build_feature_cache(paths["train"], FeatureConfig(desired_length=2.0), root / "cache", progress=False)
    assert again == path
    assert (path / "feats.npy").stat().st_mtime_ns == mtime
    other = cache_dir_for(paths["train"], FeatureConfig(desired_length=2.0, pad_type="zero"), root / "cache")
    assert other != path and not other.exists()
    assert cache_dir_for(paths["test"], config, root / "cache") != path


def test_incomplete_cache_is_refused(tmp_path):
    (tmp_path / "feats.npy").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="not a complete feature cache"):
        load_feature_cache(tmp_path)


@needs_icbhi
def test_real_icbhi_features(tmp_path):
    corpus = prepare_icbhi(ICBHI_SAMPLES, ICBHI_SAMPLES / "lists" / "official_split.txt", missing_audio="skip")
    write_manifest(corpus.cycles["train"], tmp_path / "train" / "cycles.tsv")
    cache = load_feature_cache(build_feature_cache(tmp_path / "train" / "cycles.tsv", FeatureConfig(), tmp_path / "c",
                                                   progress=False))
    assert cache.feats.shape == (6, 798, 128) and np.isfinite(cache.feats).all()
    assert -3 < float(np.mean(cache.feats)) < 3  # AudioSet normalization keeps real audio near zero mean


def test_unreadable_audio_fails_the_cache_cleanly(tmp_path):
    from compact_ssl.audio import AudioError

    corpus = prepare_icbhi(make_mini_icbhi(tmp_path / "corpus", seed=2, num_recordings=5).root)
    write_manifest(corpus.cycles["train"], tmp_path / "train" / "cycles.tsv")
    bad = corpus.cycles["train"][0].audio
    with open(bad, "r+b") as f:
        f.write(b"JUNK" * 16)
    with pytest.raises(AudioError, match=bad):
        build_feature_cache(tmp_path / "train" / "cycles.tsv", FeatureConfig(), tmp_path / "cache", progress=False)
    assert list((tmp_path / "cache").iterdir()) == []  # no half-written cache or temporary folder is left
