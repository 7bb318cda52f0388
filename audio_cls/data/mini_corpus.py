"""A small synthetic corpus in the ICBHI layout, for the mini recipe and the tests.

Breathing is band-limited noise under an inhale/exhale envelope; crackles are short damped
oscillations (explosive, 5-20 ms) scattered over the cycle; wheezes are sustained tones with a
slow pitch glide and two harmonics. The corpus reproduces the real layout and its traps:
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
) -> MiniCorpus:
    """Write the corpus under ``out`` (``audio_and_txt_files/`` and ``official_split.txt``).

    Recordings ``i % 5 in (0, 1, 2)`` go to train and the rest to test (60/40 by recording);
    labels are redrawn until both splits hold every class (at least 5 recordings are needed).
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
    for i, (split, rec_labels) in enumerate(zip(splits, labels, strict=True)):
        split_device, disk_device, sr, subtype = _DEVICE_PLAN[i % len(_DEVICE_PLAN)]
        base = f"{101 + i // 2}_{1 + i % 2}b1_{LOCATIONS[i % len(LOCATIONS)]}_{'sc' if i % 3 else 'mc'}"
        wave, rows = _recording(rng, rec_labels, sr, long_cycle=i == 4)
        stem = f"{base}_{disk_device}"
        sf.write(str(audio_dir / f"{stem}.wav"), wave, sr, subtype=subtype)
        (audio_dir / f"{stem}.txt").write_text("".join(f"{s:.3f}\t{e:.3f}\t{c}\t{w}\n" for s, e, c, w in rows))
        lines.append(f"{base}_{split_device}\t{split}")
        if disk_device != split_device:
            renamed.append(f"{base}_{split_device}")
    split_file = out / "official_split.txt"
    split_file.write_text("\n".join(lines))  # no final newline, as in the distributed file
    return MiniCorpus(out, split_file, counts, renamed)


def _recording(rng: np.random.Generator, labels: np.ndarray, sr: int, long_cycle: bool) -> tuple[np.ndarray, list]:
    """Waveform and annotation rows (start, end, crackle, wheeze) of one recording."""
    durations = rng.uniform(1.0, 3.5, size=len(labels))
    durations[0] = 0.05 if len(labels) > 3 else durations[0]  # shorter than the 62.5 ms fade
    if long_cycle:
        durations[-1] = 9.0  # longer than the 8 s input: trimmed
    lead, tail = rng.uniform(0.1, 0.6), rng.uniform(0.3, 1.0)
    total = lead + float(durations.sum()) + tail
    wave = 0.002 * rng.standard_normal(int(total * sr))
    rows, t = [], lead
    for label, dur in zip(labels, durations, strict=True):
        crackle, wheeze = int(label) % 2, int(label) // 2
        first, n = int(t * sr), int(dur * sr)
        segment = _breath(rng, n, sr)
        if crackle:
            segment += _crackles(rng, n, sr)
        if wheeze:
            segment += _wheeze(rng, n, sr)
        wave[first:first + n] += segment
        assert cycle_label(crackle, wheeze) == int(label)
        rows.append((t, t + dur, crackle, wheeze))
        t += dur
    peak = np.abs(wave).max()
    return (0.8 * wave / peak).astype(np.float32), rows


def _breath(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Band-limited noise (about 100-800 Hz) under an inhale + exhale envelope."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    spectrum *= ((freqs > 100) & (freqs < 800)) * (1 + 0.5 * rng.random())
    noise = np.fft.irfft(spectrum, n)
    noise /= np.abs(noise).max() + 1e-9
    phase = np.linspace(0, 1, n)
    split = rng.uniform(0.35, 0.5)  # inhale is shorter than exhale
    envelope = np.where(phase < split, np.sin(np.pi * phase / split) ** 2,
                        0.7 * np.sin(np.pi * (phase - split) / (1 - split)) ** 2)
    return 0.25 * noise * envelope


def _crackles(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """3-10 explosive damped oscillations of 5-20 ms at 300-1500 Hz (below 4 kHz-rate Nyquist)."""
    out = np.zeros(n)
    for _ in range(int(rng.integers(3, 11))):
        length = int(rng.uniform(0.005, 0.02) * sr)
        if length >= n:
            continue
        start = int(rng.integers(0, n - length))
        t = np.arange(length) / sr
        freq = rng.uniform(300, 1500)
        decay = np.exp(-t / (length / sr / 4))
        out[start:start + length] += rng.uniform(0.4, 0.9) * np.sin(2 * np.pi * freq * t) * decay
    return out


def _wheeze(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """A tone of 200-600 Hz gliding by up to 20 %, with two harmonics, over 40-90 % of the cycle."""
    length = max(1, int(n * rng.uniform(0.4, 0.9)))
    start = int(rng.integers(0, n - length + 1))
    t = np.arange(length) / sr
    f0 = rng.uniform(200, 600) * (1 + rng.uniform(-0.2, 0.2) * t / max(t[-1], 1e-9))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    tone = np.sin(phase) + 0.4 * np.sin(2 * phase) + 0.2 * np.sin(3 * phase)
    ramp = np.minimum(1.0, np.minimum(np.arange(length), np.arange(length)[::-1]) / (0.05 * sr))
    out = np.zeros(n)
    out[start:start + length] = 0.15 * tone * ramp
    return out
