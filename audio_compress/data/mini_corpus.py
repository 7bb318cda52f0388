"""A small synthetic speech corpus in LibriSpeech layout, spoken by espeak-ng.

:func:`make_mini_corpus` writes::

    <out_root>/LibriSpeech/
        corpus.json                      summary (config, seed, counts, speakers, espeak version)
        train-mini/ dev-mini/ test-mini/
            metadata.tsv                 one row per utterance (see below)
            <spk>/<chapter>/<spk>-<chapter>-<NNNN>.flac   16 kHz, mono, 16-bit FLAC
            <spk>/<chapter>/<spk>-<chapter>.trans.txt     "<utt-id> <UPPER CASE TEXT>" lines

The same speakers (espeak-ng voice + variant, with a fixed pitch ``-p`` and rate ``-s`` per
speaker) appear in every split, each with its own chapter id per split, so speaker
identification works across splits. Utterances are of three kinds, mixed per speaker and split:

* ``sentence``: an English sentence of 5-12 words from a small seeded grammar;
* ``keyword``: one of :data:`KEYWORDS` spoken alone (SUPERB keyword-spotting style);
* ``intent``: a home-assistant command with a Fluent-Speech-Commands style label
  ``action_object_location`` (:data:`INTENTS`).

``metadata.tsv`` is tab-separated with a header line and the columns
``utt_id speaker kind text phonemes keyword intent``; ``text`` is the upper-case transcript,
``keyword`` / ``intent`` are ``_none_`` when not applicable. ``phonemes`` is espeak-ng's own
phoneme output for the same (lower-case) text and voice, ``espeak-ng -x --sep=' '``
(Kirshenbaum-style ASCII mnemonics such as ``t 3: n O n D @``), with the stress marks
``' , % =`` removed, pause symbols (tokens starting with ``_``) and pure modifier marks (tokens
without a letter, digit or ``@``, e.g. the linking mark ``;``) dropped; tokens are separated by
single spaces and word boundaries are not marked. Because it comes from the speaking voice,
the phoneme string follows that voice's accent.

:func:`audio_compress.data.librispeech.prepare_librispeech` turns ``metadata.tsv`` into the
data-dir files ``phn``, ``utt2kind``, ``utt2keyword`` and ``utt2intent``.

Per-utterance variation (:class:`Variation`, off by default; :data:`RICH` for teacher pretraining)
draws, from a generator seeded by the corpus seed and the utterance id, a pitch and a rate around the
speaker's own, additive coloured noise at a random SNR and a reverberation-like filter (a synthetic
exponentially decaying room response with a random RT60). Labels and layout do not change.

Generation is deterministic given the seed and config (byte-identical metadata and identical
audio); an existing corpus with the same config (recorded in ``corpus.json``) is reused.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import zlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import fftconvolve
from tqdm import tqdm

from audio_compress.frames import SAMPLE_RATE
from compact_ssl.audio import resample_audio
from compact_ssl.io import write_json

__all__ = [
    "KEYWORDS",
    "INTENTS",
    "DEFAULT_UTTS_PER_SPEAKER",
    "EspeakNotFoundError",
    "MiniCorpus",
    "RICH",
    "Variation",
    "make_mini_corpus",
    "read_metadata",
    "espeak_version",
    "make_sentence",
    "phoneme_tokens",
]

#: Bump when the generator's output changes for the same config (forces regeneration).
FORMAT_VERSION = 1
SPLITS = ("train-mini", "dev-mini", "test-mini")
#: Utterances per speaker and split: 10 speakers x 40 = 400 utterances by default.
DEFAULT_UTTS_PER_SPEAKER = {"train-mini": 24, "dev-mini": 8, "test-mini": 8}
METADATA_COLUMNS = ("utt_id", "speaker", "kind", "text", "phonemes", "keyword", "intent")
NONE_LABEL = "_none_"

#: SUPERB keyword-spotting keywords (Speech Commands v1 subset).
KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")

#: Fluent-Speech-Commands style intents ``action_object_location`` with their phrasings.
INTENTS: dict[str, tuple[str, ...]] = {
    "activate_lights_kitchen": ("turn on the lights in the kitchen", "switch on the kitchen lights",
                                "kitchen lights on"),
    "deactivate_lights_bedroom": ("turn off the lights in the bedroom",
                                  "switch off the bedroom lights", "bedroom lights off"),
    "increase_volume_none": ("turn up the volume", "increase the volume", "make it louder"),
    "decrease_volume_none": ("turn down the volume", "decrease the volume", "make it quieter"),
    "increase_heat_washroom": ("turn up the heat in the washroom",
                               "increase the temperature in the washroom",
                               "make the washroom warmer"),
    "decrease_heat_kitchen": ("turn down the heat in the kitchen", "make the kitchen cooler",
                              "lower the temperature in the kitchen"),
    "activate_music_none": ("play the music", "start the music", "put some music on"),
    "bring_shoes_none": ("bring me my shoes", "fetch my shoes", "get my shoes please"),
}

# Speakers: espeak-ng voice x variant. The first ten are a balanced, varied selection;
# further speakers (num_speakers > 10) continue through the remaining combinations.
_CURATED_SPEAKERS = (
    ("en-us", "m1"), ("en-gb", "f2"), ("en-gb-scotland", "m3"), ("en-us", "f1"),
    ("en-029", "m2"), ("en-gb-x-rp", "f3"), ("en-us-nyc", "m4"), ("en-gb-x-gbclan", "f4"),
    ("en-gb", "m5"), ("en-gb-x-gbcwmd", "f5"),
)
_VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-us-nyc",
           "en-gb-x-gbclan", "en-gb-x-gbcwmd")
_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")

# ---------------------------------------------------------------- sentence grammar
# Verbs are paired with the objects they fit so that sentences read naturally.
_DETS = ("the", "a", "this", "that", "my", "your", "our", "every")
_NAMES = ("mary", "john", "anna", "peter", "lucy", "thomas", "emma", "david", "sarah", "robert")
_PEOPLE = ("teacher", "farmer", "doctor", "sailor", "painter", "child", "student", "neighbor",
           "captain", "baker", "driver", "writer", "soldier", "musician", "gardener", "boy", "girl",
           "woman", "man", "king")
_PEOPLE_ADJS = ("old", "young", "quiet", "careful", "happy", "tired", "clever", "gentle", "busy",
                "patient", "friendly", "brave", "honest", "famous", "little", "kind", "proud")
_THING_ADJS = ("old", "small", "bright", "heavy", "little", "strange", "green", "yellow", "wooden",
               "ancient", "red", "broken", "empty", "new", "beautiful")
_OPENABLE = ("door", "window", "box", "basket", "gate", "letter", "book")
_PORTABLE = ("book", "letter", "basket", "candle", "picture", "apple", "lamp", "coat", "key", "map",
             "box", "hat", "bottle")
_FIXABLE = ("door", "window", "box", "gate", "boat", "table", "fence", "lamp", "chair", "wall")
_LANDSCAPE = ("river", "bridge", "road", "field", "village", "mountain", "garden", "forest",
              "valley", "lake")
_BUILDABLE = ("house", "boat", "bridge", "fence", "table", "wall", "chair", "tower")
_TELLABLE = ("story", "song", "picture", "village", "letter", "journey", "garden")
_VERB_OBJECTS = (
    (("opened", "closed"), _OPENABLE),
    (("found", "lost", "carried", "bought", "sold", "borrowed", "wanted", "dropped"), _PORTABLE),
    (("painted", "cleaned", "repaired"), _FIXABLE),
    (("crossed", "visited", "left", "reached"), _LANDSCAPE),
    (("built",), _BUILDABLE),
    (("remembered", "described", "liked"), _TELLABLE),
    (("watched", "followed", "noticed", "helped", "called", "met"), None),  # a person
)
_VI = ("waited", "smiled", "laughed", "slept", "walked", "listened", "arrived", "returned",
       "rested", "worked", "sang", "stayed")
_ADVS = ("slowly", "quietly", "carefully", "happily", "quickly", "again", "together", "alone")
_PREPS = ("near", "behind", "beside", "outside", "in")
_PLACES = ("garden", "village", "market", "station", "forest", "harbor", "church", "kitchen",
           "school", "library", "house", "park")
_TIMES = ("yesterday", "last night", "this morning", "every evening", "on sunday",
          "in the spring", "after dinner", "before noon", "at midnight", "last week")
_SAY_VERBS = ("said", "thought", "knew", "heard")


def _noun_phrase(rng: random.Random, nouns, adjs, adj_prob: float) -> list[str]:
    det = rng.choice(_DETS)
    words = [rng.choice(adjs)] if rng.random() < adj_prob else []
    words.append(rng.choice(nouns))
    if det == "a" and words[0][0] in "aeiou":
        det = "an"
    return [det] + words


def _person(rng: random.Random, adj_prob: float) -> list[str]:
    if rng.random() < 0.2:
        return [rng.choice(_NAMES)]
    return _noun_phrase(rng, _PEOPLE, _PEOPLE_ADJS, adj_prob)


def _clause(rng: random.Random) -> list[str]:
    words = _person(rng, 0.6)
    if rng.random() < 0.7:
        verbs, objects = rng.choice(_VERB_OBJECTS)
        words.append(rng.choice(verbs))
        if objects is None:
            words += _person(rng, 0.4)
        else:
            words += _noun_phrase(rng, objects, _THING_ADJS, 0.4)
    else:
        words.append(rng.choice(_VI))
        if rng.random() < 0.5:
            words.append(rng.choice(_ADVS))
    return words


def make_sentence(rng: random.Random) -> str:
    """One grammatical lower-case English sentence of 5-12 words from the seeded grammar."""
    while True:
        if rng.random() < 0.15:
            words = _person(rng, 0.5) + [rng.choice(_SAY_VERBS), "that"] + _clause(rng)
        else:
            words = _clause(rng)
            if rng.random() < 0.6:
                words += [rng.choice(_PREPS), "the", rng.choice(_PLACES)]
            if rng.random() < 0.4:
                time = rng.choice(_TIMES).split()
                words = time + words if rng.random() < 0.4 else words + time
        if 5 <= len(words) <= 12:
            return " ".join(words)


@dataclass(frozen=True)
class Variation:
    """Per-utterance variation of the synthesized audio (the defaults change nothing).

    Attributes:
        pitch_jitter: the utterance's espeak-ng pitch is the speaker's ``+- pitch_jitter`` (uniform
            integer, clipped to 0..99).
        rate_jitter: the utterance's rate is the speaker's times ``1 + u * rate_jitter``, ``u ~ U(-1, 1)``.
        noise_prob: probability of additive noise, white noise shaped to a ``1 / f^a`` spectrum
            (``a ~ U(0, 1.5)``), at an SNR drawn uniformly from ``snr_db`` (against the speech).
        reverb_prob: probability of convolving the speech with a synthetic room response: a unit
            direct path plus Gaussian noise decaying by 60 dB over ``RT60 ~ U(rt60)`` seconds.
    """

    pitch_jitter: int = 0
    rate_jitter: float = 0.0
    noise_prob: float = 0.0
    snr_db: tuple[float, float] = (10.0, 30.0)
    reverb_prob: float = 0.0
    rt60: tuple[float, float] = (0.15, 0.6)

    def __post_init__(self) -> None:
        if not (0 <= self.noise_prob <= 1 and 0 <= self.reverb_prob <= 1):
            raise ValueError(f"noise_prob and reverb_prob must be in [0, 1], got {self.noise_prob}, {self.reverb_prob}")
        if self.pitch_jitter < 0 or not 0 <= self.rate_jitter < 1:
            raise ValueError(f"pitch_jitter must be >= 0 and rate_jitter in [0, 1), got {self.pitch_jitter}, "
                             f"{self.rate_jitter}")
        if self.snr_db[0] > self.snr_db[1] or not 0 < self.rt60[0] <= self.rt60[1]:
            raise ValueError(f"snr_db and rt60 must be (low, high) ranges with 0 < rt60, got {self.snr_db}, {self.rt60}")


#: The variation of the corpus a mini teacher is pretrained on (egs/mini_speech/benchmark).
RICH = Variation(pitch_jitter=15, rate_jitter=0.2, noise_prob=0.5, snr_db=(5.0, 30.0), reverb_prob=0.5)


def _room_response(rng: np.random.Generator, rt60: float) -> np.ndarray:
    n = max(2, int(rt60 * SAMPLE_RATE))
    decay = np.exp(-6.9 * np.arange(n) / n)  # -60 dB (ln 1000 = 6.9) at n samples
    response = 0.3 * rng.standard_normal(n) * decay
    response[0] = 1.0
    return response / np.sqrt(np.sum(response**2))


def _coloured_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n), 1.0 / n)
    noise = np.fft.irfft(spectrum / freqs ** (exponent / 2), n)
    return noise / (np.std(noise) + 1e-12)


def _vary(speech: np.ndarray, rng: np.random.Generator, variation: Variation) -> tuple[np.ndarray, float | None]:
    """Reverberate the speech (maybe); returns it and the noise level to add (None: no noise)."""
    power = float(np.mean(speech**2)) + 1e-12
    if rng.random() < variation.reverb_prob:
        speech = fftconvolve(speech, _room_response(rng, rng.uniform(*variation.rt60)))[: speech.shape[0]]
        speech = speech * np.sqrt(power / (np.mean(speech**2) + 1e-12))
    noise_std = None
    if rng.random() < variation.noise_prob:
        noise_std = float(np.sqrt(power / 10 ** (rng.uniform(*variation.snr_db) / 10)))
    return speech.astype(np.float32), noise_std


class EspeakNotFoundError(RuntimeError):
    """espeak-ng is not installed."""


@dataclass
class MiniCorpus:
    """Result of :func:`make_mini_corpus`.

    Attributes:
        root: the folder to give as LibriSpeech root (contains ``LibriSpeech/``).
        librispeech_dir: ``root / "LibriSpeech"``.
        summary: the content of ``corpus.json``.
        reused: True when an identical existing corpus was kept instead of regenerated.
    """

    root: Path
    librispeech_dir: Path
    summary: dict
    reused: bool

    @property
    def splits(self) -> list[str]:
        return list(self.summary["config"]["utts_per_speaker"])


def phoneme_tokens(espeak_x_output: str) -> str:
    """Phoneme tokens from ``espeak-ng -x --sep=' '`` output (see the module docstring)."""
    tokens = []
    for tok in espeak_x_output.split():
        tok = tok.strip("',%=")
        if tok and not tok.startswith("_") and re.search(r"[A-Za-z0-9@]", tok):
            tokens.append(tok)
    return " ".join(tokens)


def _find_espeak(espeak: str) -> str:
    exe = shutil.which(espeak)
    if exe is None:
        raise EspeakNotFoundError(
            f"'{espeak}' was not found on PATH; the mini speech corpus is synthesized with "
            "espeak-ng. Install it with 'apt-get install espeak-ng' (Debian/Ubuntu) or run "
            "'make sysdeps'."
        )
    return exe


def espeak_version(espeak: str = "espeak-ng") -> str:
    """The espeak-ng version string, e.g. ``"1.51"``."""
    exe = _find_espeak(espeak)
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"text-to-speech:\s*(\S+)", out)
    return m.group(1) if m else out.strip().split("\n")[0]


def _speaker_table(num_speakers: int, seed: int) -> list[dict]:
    combos = list(_CURATED_SPEAKERS)
    for voice in _VOICES:
        for variant in _VARIANTS:
            if (voice, variant) not in combos:
                combos.append((voice, variant))
    if num_speakers > len(combos):
        raise ValueError(f"num_speakers={num_speakers} exceeds the {len(combos)} available "
                         "espeak-ng voice/variant combinations")
    if num_speakers < 1:
        raise ValueError("num_speakers must be >= 1")
    rng = random.Random(f"mini-corpus-speakers-{seed}")
    ids = rng.sample(range(19, 9000), num_speakers)
    table = []
    for i in range(num_speakers):
        voice, variant = combos[i]
        table.append({
            "speaker": str(ids[i]),
            "voice": f"{voice}+{variant}",
            "gender": "F" if variant.startswith("f") else "M",
            "pitch": rng.randint(30, 70),
            "rate": rng.randint(140, 195),
        })
    return table


def _plan(seed: int, speakers: list[dict], utts_per_speaker: Mapping[str, int]) -> dict:
    """Every utterance of the corpus: ids, kind, text and labels (no audio yet)."""
    rng = random.Random(f"mini-corpus-{seed}")
    chapters = rng.sample(range(10000, 300000), len(speakers) * len(utts_per_speaker))
    pattern = ("sentence", "keyword", "sentence", "intent")
    intent_names = sorted(INTENTS)
    used_sentences: set[str] = set()
    plan: dict[str, list[dict]] = {}
    c = 0
    for si, split in enumerate(utts_per_speaker):
        n = utts_per_speaker[split]
        kw_counter = si * 3
        intent_counter = si * 5
        rows = []
        for pi, spk in enumerate(speakers):
            chapter = str(chapters[c])
            c += 1
            kinds = [pattern[(k + pi) % len(pattern)] for k in range(n)]
            rng.shuffle(kinds)
            for k, kind in enumerate(kinds):
                keyword = intent = NONE_LABEL
                if kind == "sentence":
                    text = make_sentence(rng)
                    while text in used_sentences:
                        text = make_sentence(rng)
                    used_sentences.add(text)
                elif kind == "keyword":
                    keyword = KEYWORDS[kw_counter % len(KEYWORDS)]
                    kw_counter += 1
                    text = keyword
                else:
                    intent = intent_names[intent_counter % len(intent_names)]
                    intent_counter += 1
                    text = rng.choice(INTENTS[intent])
                utt = f"{spk['speaker']}-{chapter}-{k:04d}"
                rows.append({"utt_id": utt, "speaker": spk["speaker"], "chapter": chapter,
                             "kind": kind, "text": text, "keyword": keyword, "intent": intent,
                             "voice": spk["voice"], "pitch": spk["pitch"], "rate": spk["rate"]})
        plan[split] = sorted(rows, key=lambda r: r["utt_id"])
    return plan


def _synthesize(exe: str, row: dict, flac_path: Path, tmpdir: str, seed: int,
                variation: Variation = Variation()) -> tuple[str, int]:
    """Speak ``row`` to ``flac_path``; returns (phoneme tokens, number of samples)."""
    wav_path = os.path.join(tmpdir, row["utt_id"] + ".wav")
    # a generator of its own, so that the default (no variation) audio is what it always was
    vrng = np.random.default_rng([seed, zlib.crc32(row["utt_id"].encode()), 1])
    pitch = int(np.clip(row["pitch"] + vrng.integers(-variation.pitch_jitter, variation.pitch_jitter + 1), 0, 99))
    rate = int(round(row["rate"] * (1.0 + vrng.uniform(-1.0, 1.0) * variation.rate_jitter)))
    cmd = [exe, "-v", row["voice"], "-p", str(pitch), "-s", str(rate),
           "-x", "--sep= ", "-w", wav_path, row["text"]]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not os.path.exists(wav_path):
        raise RuntimeError(f"espeak-ng failed for {row['utt_id']} ({' '.join(cmd)}): "
                           f"exit {proc.returncode}: {proc.stderr.strip()}")
    wav, sr = sf.read(wav_path, dtype="float32", always_2d=True)
    os.unlink(wav_path)
    wav, noise_std = _vary(resample_audio(wav.mean(axis=1), sr, SAMPLE_RATE), vrng, variation)
    # Leading/trailing silence with a faint noise floor, seeded per utterance.
    urng = np.random.default_rng([seed, zlib.crc32(row["utt_id"].encode())])
    lead, trail = urng.integers(int(0.08 * SAMPLE_RATE), int(0.3 * SAMPLE_RATE), size=2)
    wav = np.concatenate([np.zeros(lead, np.float32), wav, np.zeros(trail, np.float32)])
    wav = wav + urng.normal(0.0, 3e-4, size=wav.shape).astype(np.float32)
    if noise_std is not None:
        wav = wav + (noise_std * _coloured_noise(vrng, wav.shape[0], vrng.uniform(0.0, 1.5))).astype(np.float32)
    peak = float(np.max(np.abs(wav)))
    if variation != Variation() and peak > 0.99:  # loud noise or reverberation: scale down rather than clip
        wav = wav * np.float32(0.99 / peak)
    wav = np.clip(wav, -1.0, 32767 / 32768)
    flac_path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(flac_path), wav, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    phonemes = phoneme_tokens(proc.stdout)
    if not phonemes:
        raise RuntimeError(f"espeak-ng gave no phonemes for {row['utt_id']} ({row['text']!r})")
    return phonemes, int(wav.shape[0])


def read_metadata(path: str | Path) -> list[dict[str, str]]:
    """Read a ``metadata.tsv`` written by :func:`make_mini_corpus` (rows as dicts)."""
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or tuple(lines[0].split("\t")) != METADATA_COLUMNS:
        raise ValueError(f"{path}:1: expected the header {' '.join(METADATA_COLUMNS)} "
                         "(tab-separated)")
    rows = []
    for lineno, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != len(METADATA_COLUMNS):
            raise ValueError(f"{path}:{lineno}: expected {len(METADATA_COLUMNS)} tab-separated "
                             f"fields, found {len(fields)}")
        rows.append(dict(zip(METADATA_COLUMNS, fields)))
    return rows


def _config(seed, num_speakers, utts_per_speaker, version, variation: Variation) -> dict:
    return {"format_version": FORMAT_VERSION, "seed": int(seed), "num_speakers": int(num_speakers),
            "utts_per_speaker": {k: int(v) for k, v in utts_per_speaker.items()},
            "espeak_ng_version": version,
            "variation": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(variation).items()}}


def _existing_is_complete(ls_dir: Path, summary: dict) -> bool:
    for split in summary["config"]["utts_per_speaker"]:
        meta = ls_dir / split / "metadata.tsv"
        if not meta.is_file():
            return False
        rows = read_metadata(meta)
        if len(rows) != summary["counts"]["per_split"][split]:
            return False
        for r in rows:
            spk, chapter, _ = r["utt_id"].split("-")
            if not (ls_dir / split / spk / chapter / f"{r['utt_id']}.flac").is_file():
                return False
    return True


def make_mini_corpus(
    out_root: str | Path,
    seed: int = 0,
    num_speakers: int = 10,
    utts_per_speaker: Mapping[str, int] | None = None,
    num_workers: int | None = None,
    force: bool = False,
    espeak: str = "espeak-ng",
    variation: Variation = Variation(),
) -> MiniCorpus:
    """Generate (or reuse) the mini corpus under ``out_root/LibriSpeech``.

    One function on purpose: the corpus recipe in order (reuse check, speakers and their plan,
    synthesis in parallel, per-split counts, summary), each step a helper of this module.

    Args:
        out_root: folder to create; afterwards it is a valid LibriSpeech root.
        seed: seeds speaker ids, pitches, rates, chapter ids, texts and noise.
        num_speakers: number of espeak-ng speakers (each in every split).
        utts_per_speaker: utterances per speaker for each split name, default
            :data:`DEFAULT_UTTS_PER_SPEAKER` (400 utterances with 10 speakers).
        num_workers: synthesis threads (default ``min(4, cpu count)``).
        force: regenerate even when an identical corpus exists.
        espeak: espeak-ng executable.
        variation: per-utterance pitch, rate, noise and reverberation (:class:`Variation`, :data:`RICH`).

    Raises:
        EspeakNotFoundError: espeak-ng is not installed.
        FileExistsError: a split folder exists that this generator did not write.
    """
    utts_per_speaker = dict(utts_per_speaker or DEFAULT_UTTS_PER_SPEAKER)
    for split, n in utts_per_speaker.items():
        if n < 1 or "/" in split or split.startswith("."):
            raise ValueError(f"bad split {split!r} with {n} utterances per speaker")
    exe = _find_espeak(espeak)
    version = espeak_version(exe)
    config = _config(seed, num_speakers, utts_per_speaker, version, variation)
    out_root = Path(out_root).absolute()
    ls_dir = out_root / "LibriSpeech"
    summary_path = ls_dir / "corpus.json"

    old_splits: list[str] = []
    if summary_path.is_file():
        try:
            old = json.loads(summary_path.read_text(encoding="utf-8"))
            old_splits = list(old["config"]["utts_per_speaker"])
            if not force and old["config"] == config and _existing_is_complete(ls_dir, old):
                return MiniCorpus(out_root, ls_dir, old, reused=True)
        except (ValueError, KeyError, TypeError):
            old_splits = []
        summary_path.unlink()
    for split in sorted(set(old_splits) | set(utts_per_speaker)):
        d = ls_dir / split
        if d.exists():
            if not (d / "metadata.tsv").is_file() and any(d.iterdir()):
                raise FileExistsError(
                    f"{d} exists and was not written by make_mini_corpus (no metadata.tsv); "
                    "choose another output folder or remove it")
            shutil.rmtree(d)

    speakers = _speaker_table(num_speakers, seed)
    plan = _plan(seed, speakers, utts_per_speaker)
    workers = num_workers or min(4, os.cpu_count() or 1)
    ls_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, tuple[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="mini-corpus-espeak-") as tmpdir:
        jobs = []
        for split, rows in plan.items():
            for r in rows:
                flac = ls_dir / split / r["speaker"] / r["chapter"] / f"{r['utt_id']}.flac"
                jobs.append((r["utt_id"], (exe, r, flac, tmpdir, seed, variation)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {utt: pool.submit(_synthesize, *args) for utt, args in jobs}
            for utt, fut in tqdm(futures.items(), desc="espeak-ng", unit="utt", leave=False):
                results[utt] = fut.result()

    counts = {"per_split": {}, "per_kind": {}, "per_speaker": {}, "seconds": {}}
    for split, rows in plan.items():
        split_dir = ls_dir / split
        lines = ["\t".join(METADATA_COLUMNS)]
        trans: dict[Path, list[str]] = {}
        for r in rows:
            phonemes, _ = results[r["utt_id"]]
            text = r["text"].upper()
            lines.append("\t".join([r["utt_id"], r["speaker"], r["kind"], text, phonemes,
                                    r["keyword"], r["intent"]]))
            tpath = split_dir / r["speaker"] / r["chapter"] / f"{r['speaker']}-{r['chapter']}.trans.txt"
            trans.setdefault(tpath, []).append(f"{r['utt_id']} {text}")
        for tpath, tlines in trans.items():
            tpath.write_text("\n".join(tlines) + "\n", encoding="utf-8")
        (split_dir / "metadata.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        counts["per_split"][split] = len(rows)
        counts["per_kind"][split] = {k: sum(r["kind"] == k for r in rows)
                                     for k in ("sentence", "keyword", "intent")}
        counts["per_speaker"][split] = {s["speaker"]: sum(r["speaker"] == s["speaker"] for r in rows)
                                        for s in speakers}
        counts["seconds"][split] = round(sum(results[r["utt_id"]][1] for r in rows) / SAMPLE_RATE, 3)
    summary = {
        "config": config,
        "generator": "audio_compress.data.mini_corpus.make_mini_corpus",
        "sample_rate": SAMPLE_RATE,
        "phonemes": "espeak-ng -x --sep=' ' (same text and voice); stress marks ' , % = removed, "
                    "pause tokens (_...) and modifier-only tokens (e.g. ;) dropped, tokens "
                    "separated by single spaces",
        "metadata_columns": list(METADATA_COLUMNS),
        "keywords": list(KEYWORDS),
        "intents": {k: list(v) for k, v in INTENTS.items()},
        "speakers": speakers,
        "counts": counts,
        "total_utterances": sum(counts["per_split"].values()),
    }
    write_json(summary_path, summary)
    return MiniCorpus(out_root, ls_dir, summary, reused=False)
