"""The mini ICBHI corpus carries the acoustic signatures of its classes (crackle transients, 100-1000 Hz
wheeze tones, per-patient breathing, per-device responses), the trained mini model runs on real ICBHI
recordings (a smoke test of the format), and the mini recipe learns: CE beats the one-class Score of 50
in every seed under both selection protocols (slow)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import SHARED_DATA

from audio_cls.data import make_mini_icbhi, read_annotations
from audio_cls.data.mini_corpus import DEVICE_RESPONSES, Patient, breath, crackles, through_device, wheeze_tone

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "egs" / "mini_icbhi" / "patchmix"
ICBHI_SAMPLES = SHARED_DATA / "icbhi_samples"
SR = 4000  # the Litt3200 rate: every signature must survive its 2 kHz Nyquist


def _band_peak(wave: np.ndarray, sr: int) -> tuple[float, float]:
    """(frequency, prominence) of the strongest 12.5 Hz-smoothed power peak in 100-1000 Hz; prominence
    is the peak over the band's median power."""
    power = np.abs(np.fft.rfft(wave * np.hanning(len(wave)))) ** 2
    freqs = np.fft.rfftfreq(len(wave), 1 / sr)
    smooth = np.convolve(power, np.ones(25) / 25, mode="same")
    band = (freqs >= 100) & (freqs <= 1000)
    return float(freqs[band][np.argmax(smooth[band])]), float(smooth[band].max() / np.median(smooth[band]))


def _loud_frames(wave: np.ndarray, reference: np.ndarray, sr: int) -> int:
    """5 ms frames of ``wave`` with over 25 times the median frame energy of ``reference``."""
    size = int(0.005 * sr)
    energy = lambda x: (x[: len(x) // size * size].reshape(-1, size) ** 2).sum(axis=1)  # noqa: E731
    return int((energy(wave) > 25 * np.median(energy(reference))).sum())


@pytest.mark.parametrize("seed", range(5))
def test_wheeze_is_a_tone_in_100_1000_hz_that_breath_lacks(seed):
    rng = np.random.default_rng(seed)
    patient = Patient.draw(0, 101 + seed)
    normal = breath(rng, 2 * SR, SR, patient)
    wheeze = wheeze_tone(rng, 2 * SR, SR)
    freq, prominence = _band_peak(normal + wheeze, SR)
    assert 100 <= freq <= 1000 and prominence > 50  # a narrow peak stands far above the breath noise
    assert _band_peak(normal, SR)[1] < 5  # breath alone is broadband: no peak
    # sustained: the tone covers at least half of the cycle
    assert (np.abs(wheeze) > 0).mean() >= 0.5


@pytest.mark.parametrize("seed", range(5))
def test_crackles_are_short_explosive_transients(seed):
    rng = np.random.default_rng(seed)
    normal = breath(rng, 2 * SR, SR, Patient.draw(0, 101 + seed))
    clicks = crackles(rng, 2 * SR, SR)
    assert _loud_frames(normal, normal, SR) == 0
    assert _loud_frames(normal + clicks, normal, SR) >= 3
    # each transient starts at its peak and is gone (below 1 % of it) within 20 ms
    active = np.flatnonzero(np.abs(clicks) > 0.01 * np.abs(clicks).max())
    bursts = np.split(active, np.flatnonzero(np.diff(active) > 1) + 1)
    assert 3 <= len(bursts) and max(len(b) for b in bursts) <= 0.02 * SR * 2  # overlapping pairs at most
    first = bursts[0]
    assert abs(clicks[first[0]]) >= 0.5 * np.abs(clicks[first]).max()


def test_each_device_has_its_own_response():
    freqs = np.array([100.0, 250.0, 500.0, 1000.0, 1500.0, 2000.0])
    curves = {name: 20 * np.log10(device.gain(freqs)) for name, device in DEVICE_RESPONSES.items()}
    assert sorted(curves) == ["AKGC417L", "Litt3200", "LittC2SE", "Meditron"]
    names = sorted(curves)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.abs(curves[a] - curves[b]).max() > 3.0, (a, b)  # over 3 dB apart somewhere in the band
    # the filter is the response: white noise through a device peaks at its resonance
    noise = np.random.default_rng(0).standard_normal(8 * SR)
    for name, device in DEVICE_RESPONSES.items():
        filtered = np.abs(np.fft.rfft(through_device(noise, SR, device))) / np.abs(np.fft.rfft(noise))
        freqs = np.fft.rfftfreq(len(noise), 1 / SR)
        assert abs(freqs[np.argmax(filtered)] - device.peak_hz) < 0.2 * device.peak_hz, name
        np.testing.assert_allclose(filtered, device.gain(freqs), rtol=1e-6)


def test_patients_differ_and_are_fixed_by_the_seed():
    assert Patient.draw(0, 101) == Patient.draw(0, 101)
    traits = {Patient.draw(0, p) for p in range(101, 111)}
    assert len(traits) == 10 and len({Patient.draw(s, 101) for s in range(5)}) == 5


def test_written_corpus_keeps_the_signatures(tmp_path):
    corpus = make_mini_icbhi(tmp_path, seed=0, num_recordings=10)
    prominence = {0: [], 2: []}
    for txt in sorted((corpus.root / "audio_and_txt_files").glob("*.txt")):
        wave, sr = sf.read(txt.with_suffix(".wav"))
        for cycle in read_annotations(txt):
            if cycle.label in prominence and cycle.end - cycle.start > 0.5:
                prominence[cycle.label].append(_band_peak(wave[int(cycle.start * sr):int(cycle.end * sr)], sr)[1])
    assert prominence[0] and prominence[2]
    # through every device: every wheeze cycle stands out of every normal one
    assert min(prominence[2]) > 3 * max(prominence[0])


def test_one_class_reference_is_the_best_constant_prediction():
    from audio_cls.bin.results import one_class_reference

    predicted, four, two = one_class_reference([63, 54, 40, 31])  # the mini test set
    assert predicted == 0
    assert (four.specificity, four.sensitivity, four.score) == pytest.approx((100.0, 0.0, 50.0))  # all normal
    assert (two.sensitivity, two.score) == pytest.approx((0.0, 50.0))
    # without normal cycles, all "crackle" is best: Sp 0, Se 5 / 10
    predicted, four, two = one_class_reference([0, 5, 3, 2])
    assert predicted == 1
    assert (four.sensitivity, four.score) == pytest.approx((50.0, 25.0)) and two.sensitivity == pytest.approx(100.0)


def _untrained_checkpoint(path: Path, cache_dir: Path) -> None:
    from audio_cls.tasks.config import load_config
    from audio_cls.tasks.icbhi import IcbhiTask

    config = load_config(RECIPE / "conf" / "ce.yaml", [f"data.cache_dir={cache_dir}"])
    torch.manual_seed(0)
    task = IcbhiTask(config, [1, 1, 1, 1])
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams), "epoch": 0}, path)


@pytest.mark.skipif(not ICBHI_SAMPLES.is_dir(),
                    reason=f"real ICBHI samples not found at {ICBHI_SAMPLES} (optional; `make test-data`)")
def test_a_mini_model_runs_on_real_recordings(tmp_path):
    """What stage 5 does (prepare -> cache -> evaluate), in process: the real format end to end."""
    from audio_cls.bin import cache_features, evaluate, prepare_icbhi

    data, cache = tmp_path / "data", tmp_path / "dump" / "features"
    ckpt = tmp_path / "exp" / "ce" / "seed1" / "checkpoints" / "last.ckpt"
    _untrained_checkpoint(ckpt, cache)
    prepare_icbhi.main(["--root", str(ICBHI_SAMPLES), "--out", str(data), "--missing_audio", "skip"])
    cache_features.main(["--config", str(RECIPE / "conf" / "ce.yaml"), "--set", f"data.train={data}/train/cycles.tsv",
                         "--set", f"data.test={data}/test/cycles.tsv", "--set", f"data.cache_dir={cache}"])
    evaluate.main(["--ckpt", str(ckpt), "--test", str(data / "test" / "cycles.tsv"), "--out", str(tmp_path / "real")])
    scores = json.loads((tmp_path / "real" / "scores.json").read_text())
    # the 10 sample recordings' test cycles: 80 normal, 1 crackle, 10 wheeze (skipped split entries aside)
    assert scores["num_cycles"] == 91 and [sum(r) for r in scores["confusion"]] == [80, 1, 10, 0]
    assert scores["test_manifest"] == str(data / "test" / "cycles.tsv")


def test_real_samples_stage_is_skipped_without_samples(tmp_path):
    proc = subprocess.run(["bash", str(RECIPE / "run.sh"), "--stage", "5", "--real_samples", "",
                           "--exp_root", str(tmp_path / "exp")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "Stage 5 (real-sample smoke test) skipped: no --real_samples" in proc.stdout
    proc = subprocess.run(["bash", str(RECIPE / "run.sh"), "--stage", "5", "--real_samples", str(tmp_path),
                           "--exp_root", str(tmp_path / "exp")], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and f"--real_samples {tmp_path}: no audio_and_txt_files/" in proc.stderr


@pytest.mark.slow
def test_mini_recipe_ce_learns_in_every_seed(tmp_path):
    """CE alone over the recipe's 3 seeds and both protocols: every seed beats the one-class Score of 50 by 15."""
    args = ["--corpus_root", str(tmp_path / "corpus"), "--datadir", str(tmp_path / "data"), "--exp_root",
            str(tmp_path / "exp"), "--dumpdir", str(tmp_path / "dump"), "--confs", "conf/ce.yaml"]
    proc = subprocess.run(["bash", str(RECIPE / "run.sh"), *args], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    exp = tmp_path / "exp" / "ast_tiny_patchmix"
    rows = {(r["method"], r["selection"]): r for r in json.loads((exp / "results.json").read_text())}
    assert sorted(rows) == [("ce", "best"), ("ce", "last"), ("ce_clean", "best_val"), ("ce_clean", "last")]
    for key, row in rows.items():
        assert row["seeds"] == [1, 2, 3] and row["test_counts"] == [63, 54, 40, 31], key
        metrics = row["metrics"]
        assert min(metrics["score"]["values"]) >= 65, (key, metrics["score"]["values"])
        assert min(metrics["sensitivity"]["values"]) > 0 and min(metrics["specificity"]["values"]) > 0, key
    table = (exp / "results.md").read_text()
    assert "| one-class prediction (reference: every cycle normal) | none | - | 100.00 | 0.00 | 50.00 |" in table
    if ICBHI_SAMPLES.is_dir():  # stage 5: the trained model on the real samples, outside the results table
        real = json.loads((exp / "real_samples" / "ce" / "scores.json").read_text())
        assert real["num_cycles"] == 91 and real["checkpoint"].endswith("ce/seed1/checkpoints/last.ckpt")
        assert "not a score claim" in (exp / "logs" / "stage5.log").read_text()
