"""A small synthetic corpus in the ICBHI layout, for the mini recipe and the tests.

Each cycle carries the acoustic signature of its class, so a tiny AST can learn it:

* breath (every cycle): band-limited noise under an inhale/exhale envelope; its band, loudness
  and inhale share vary by patient (:class:`Patient`);
* crackles: short explosive transients, a sharp first deflection ringing down within 5-20 ms,
  several per second of the cycle;
* wheezes: a sustained tone of 100-1000 Hz with two harmonics, gliding slightly, over most of
  the cycle;
* both: crackles and a wheeze; normal: breath only.

Every recording then passes its device's fixed frequency response (:data:`DEVICE_RESPONSES`:
a resonance and a low-pass, different per stethoscope) and gets the device's hiss, so the
classes must be told apart across devices. The corpus reproduces the real layout and its traps:
``audio_and_txt_files/<patient>_<index>_<location>_<mode>_<device>.{wav,txt}`` with
tab-separated ``start end crackle wheeze`` lines, mixed sample rates (44.1 kHz and 4 kHz) and
bit depths, an ``official_split.txt`` without a final newline, some recordings stored under their
zip name (``_AKGC417L``/``_LittC2SE``) while the split names them ``_Meditron``, cycles shorter than
the fade and longer than the 8 s input. Deterministic given the seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from audio_cls.data.icbhi import CLASS_NAMES, LOCATIONS, cycle_label

#: (device in the split file, device on disk, sample rate, subtype)
_DEVICE_PLAN = (
    ("Meditron", "Meditron", 44100, "PCM_24"),
    ("AKGC417L", "AKGC417L", 44100, "PCM_16"),
    ("Litt3200", "Litt3200", 4000, "PCM_16"),
    ("Meditron", "AKGC417L", 44100, "PCM_16"),  # the renamed-file trap
    ("LittC2SE", "LittC2SE", 44100, "PCM_32"),
    ("Meditron", "LittC2SE", 44100, "PCM_24"),  # the renamed-file trap
)
#: class proportions of the drawn labels (normal, crackle, wheeze, both), roughly ICBHI's
_CLASS_PROBS = (0.4, 0.25, 0.2, 0.15)


@dataclass(frozen=True)
class DeviceResponse:
    """A stethoscope's fixed frequency response: a resonance over a first-order low-pass, plus hiss."""

    peak_hz: float  #: centre of the resonance
    peak_gain: float  #: linear gain at the resonance (1: none)
    peak_width_hz: float  #: half-width of the (Gaussian) resonance
    cutoff_hz: float  #: -3 dB point of the low-pass
    hiss: float  #: standard deviation of the white noise the device adds

    def gain(self, freqs: np.ndarray) -> np.ndarray:
        """Linear magnitude response at ``freqs`` (Hz)."""
        resonance = 1 + (self.peak_gain - 1) * np.exp(-0.5 * ((freqs - self.peak_hz) / self.peak_width_hz) ** 2)
        return resonance / np.sqrt(1 + (freqs / self.cutoff_hz) ** 2)


#: one response per device on disk: the diaphragm stethoscopes emphasize different bands
DEVICE_RESPONSES = {
    "Meditron": DeviceResponse(peak_hz=250.0, peak_gain=2.0, peak_width_hz=120.0, cutoff_hz=2500.0, hiss=0.004),
    "AKGC417L": DeviceResponse(peak_hz=1200.0, peak_gain=2.5, peak_width_hz=500.0, cutoff_hz=6000.0, hiss=0.008),
    "Litt3200": DeviceResponse(peak_hz=120.0, peak_gain=3.0, peak_width_hz=60.0, cutoff_hz=1200.0, hiss=0.003),
    "LittC2SE": DeviceResponse(peak_hz=500.0, peak_gain=1.5, peak_width_hz=250.0, cutoff_hz=1800.0, hiss=0.005),
}


@dataclass(frozen=True)
class Patient:
    """Breathing traits shared by every recording of one patient."""

    band: tuple[float, float]  #: breath noise band (Hz)
    loudness: float  #: breath amplitude
    inhale: float  #: share of the cycle spent inhaling

    @classmethod
    def draw(cls, seed: int, patient: int) -> Patient:
        """The traits of ``patient``, fixed by the corpus seed and the patient id."""
        rng = np.random.default_rng([seed, patient])
        return cls(band=(rng.uniform(60, 150), rng.uniform(500, 1200)), loudness=rng.uniform(0.15, 0.35),
                   inhale=rng.uniform(0.3, 0.5))


@dataclass
class MiniCorpus:
    """What was written: the root, the split file and the ground-truth cycle counts."""

    root: Path
    split_file: Path
    counts: dict[str, list[int]]  #: cycles per class for train and test
    renamed: list[str]  #: split names whose audio is stored under another device suffix


def make_mini_icbhi(
    out: str | Path,
    seed: int = 0,
    num_recordings: int = 30,
    cycles_per_recording: tuple[int, int] = (3, 6),
    progress: bool = False,
) -> MiniCorpus:
    """Write the corpus under ``out`` (``audio_and_txt_files/`` and ``official_split.txt``).

    Recordings ``i % 5 in (0, 1, 2)`` go to train and the rest to test (60/40 by recording);
    recordings ``2k`` and ``2k + 1`` share patient ``101 + k``. Labels are redrawn until both
    splits hold every class (at least 5 recordings are needed). ``progress``: a progress bar.
    """
    if num_recordings < 5:
        raise ValueError(f"the mini corpus needs at least 5 recordings (3 train, 2 test), got {num_recordings}")
    out = Path(out)
    audio_dir = out / "audio_and_txt_files"
    audio_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    splits = ["train" if i % 5 < 3 else "test" for i in range(num_recordings)]
    for _ in range(1000):
        sizes = rng.integers(cycles_per_recording[0], cycles_per_recording[1] + 1, size=num_recordings)
        labels = [rng.choice(len(CLASS_NAMES), size=n, p=_CLASS_PROBS) for n in sizes]
        counts = {s: [0] * len(CLASS_NAMES) for s in ("train", "test")}
        for split, rec_labels in zip(splits, labels, strict=True):
            for label in rec_labels:
                counts[split][int(label)] += 1
        if all(min(c) > 0 for c in counts.values()):
            break
    else:
        raise ValueError(f"could not draw labels with every class in both splits for {num_recordings} recordings; "
                         "use more recordings or cycles per recording")
    lines, renamed = [], []
    recordings = tqdm(list(zip(splits, labels, strict=True)), desc="recordings", unit="rec", disable=not progress)
    for i, (split, rec_labels) in enumerate(recordings):
        split_device, disk_device, sr, subtype = _DEVICE_PLAN[i % len(_DEVICE_PLAN)]
        patient = 101 + i // 2
        base = f"{patient}_{1 + i % 2}b1_{LOCATIONS[i % len(LOCATIONS)]}_{'sc' if i % 3 else 'mc'}"
        wave, rows = _recording(rng, rec_labels, sr, Patient.draw(seed, patient), DEVICE_RESPONSES[disk_device],
                                long_cycle=i == 4)
        stem = f"{base}_{disk_device}"
        sf.write(str(audio_dir / f"{stem}.wav"), wave, sr, subtype=subtype)
        (audio_dir / f"{stem}.txt").write_text("".join(f"{s:.3f}\t{e:.3f}\t{c}\t{w}\n" for s, e, c, w in rows))
        lines.append(f"{base}_{split_device}\t{split}")
        if disk_device != split_device:
            renamed.append(f"{base}_{split_device}")
    split_file = out / "official_split.txt"
    split_file.write_text("\n".join(lines))  # no final newline, as in the distributed file
    return MiniCorpus(out, split_file, counts, renamed)


def _recording(rng: np.random.Generator, labels: np.ndarray, sr: int, patient: Patient, device: DeviceResponse,
               long_cycle: bool) -> tuple[np.ndarray, list]:
    """Waveform and annotation rows (start, end, crackle, wheeze) of one recording."""
    durations = rng.uniform(1.0, 3.0, size=len(labels))
    durations[0] = 0.05 if len(labels) > 3 else durations[0]  # shorter than the 62.5 ms fade
    if long_cycle:
        durations[-1] = 9.0  # longer than the 8 s input: trimmed
    lead, tail = rng.uniform(0.1, 0.6), rng.uniform(0.3, 1.0)
    total = lead + float(durations.sum()) + tail
    wave = np.zeros(int(total * sr))
    rows, t = [], lead
    for label, dur in zip(labels, durations, strict=True):
        crackle, wheeze = int(label) % 2, int(label) // 2
        first, n = int(t * sr), int(dur * sr)
        segment = breath(rng, n, sr, patient)
        if crackle:
            segment += crackles(rng, n, sr)
        if wheeze:
            segment += wheeze_tone(rng, n, sr)
        wave[first:first + n] += segment
        assert cycle_label(crackle, wheeze) == int(label)
        rows.append((t, t + dur, crackle, wheeze))
        t += dur
    wave = through_device(wave, sr, device) + device.hiss * rng.standard_normal(len(wave))
    return (0.8 * wave / np.abs(wave).max()).astype(np.float32), rows


def through_device(wave: np.ndarray, sr: int, device: DeviceResponse) -> np.ndarray:
    """``wave`` filtered by the device's frequency response (zero phase, in the frequency domain)."""
    freqs = np.fft.rfftfreq(len(wave), 1 / sr)
    return np.fft.irfft(np.fft.rfft(wave) * device.gain(freqs), len(wave))


def breath(rng: np.random.Generator, n: int, sr: int, patient: Patient) -> np.ndarray:
    """Noise in the patient's band under an inhale + exhale envelope (peak ``patient.loudness``)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    spectrum *= (freqs > patient.band[0]) & (freqs < patient.band[1])
    noise = np.fft.irfft(spectrum, n)
    noise /= np.abs(noise).max() + 1e-9
    phase = np.linspace(0, 1, n)
    split = patient.inhale  # inhale is shorter than exhale
    envelope = np.where(phase < split, np.sin(np.pi * phase / split) ** 2,
                        0.7 * np.sin(np.pi * (phase - split) / (1 - split)) ** 2)
    return patient.loudness * noise * (0.2 + 0.8 * envelope)


def crackles(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Explosive transients, 5-10 per second (at least 3): a sharp first deflection ringing at
    200-1500 Hz (below the 4 kHz rate's Nyquist) that dies within 5-20 ms."""
    out = np.zeros(n)
    for _ in range(max(3, int(rng.uniform(5, 10) * n / sr))):
        length = int(rng.uniform(0.005, 0.02) * sr)
        if length >= n:
            continue
        start = int(rng.integers(0, n - length))
        t = np.arange(length) / sr
        ring = np.sin(2 * np.pi * rng.uniform(200, 1500) * t + np.pi / 2)  # starts at its peak: explosive
        out[start:start + length] += rng.uniform(0.8, 1.2) * ring * np.exp(-t / (length / sr / 3))
    return out


def wheeze_tone(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """A tone whose fundamental lies in 100-1000 Hz (log-uniform) and glides by up to 15 %, with two
    harmonics, over 50-90 % of the cycle starting in its first fifth."""
    length = max(1, int(n * rng.uniform(0.5, 0.9)))
    start = int(rng.integers(0, min(n - length, n // 5) + 1))
    t = np.arange(length) / sr
    f0 = np.exp(rng.uniform(np.log(100), np.log(1000))) * (1 + rng.uniform(-0.15, 0.15) * t / max(t[-1], 1e-9))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    tone = np.sin(phase) + 0.4 * np.sin(2 * phase) + 0.2 * np.sin(3 * phase)
    ramp = np.minimum(1.0, np.minimum(np.arange(length), np.arange(length)[::-1]) / (0.03 * sr))
    out = np.zeros(n)
    out[start:start + length] = rng.uniform(0.15, 0.3) * tone * ramp
    return out
