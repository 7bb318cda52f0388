"""On-disk layouts that s3prl's SUPERB task datasets read, built from our own corpora.

s3prl's downstream datasets read their corpora in fixed layouts; instead of changing s3prl we
write small copies of our data in those layouts (16 kHz audio), so the mini SUPERB tasks run
through exactly the same s3prl code as the full ones. Sources: the mini corpus's Kaldi data
dirs (``data/{train,dev_mini,test_mini}`` with ``utt2keyword``, ``utt2intent``, ``phn``) via
:func:`build_mini_layouts`, and the Free Spoken Digit Dataset via :func:`build_fsdd_layouts`.

Layouts (``<out>/<task>/``), each as s3prl 0.4.18's dataset code reads it:

* ``ks`` (``speech_commands``, Speech Commands v0.01): ``train/<keyword>/<name>_nohash_<k>.wav``
  plus ``train/_background_noise_/*.wav`` (the ``_silence_`` class: s3prl crops random 1 s
  windows, so each file is longer than 1 s) and a separate test root
  ``test/<keyword>/*.wav`` + ``test/_silence_/*.wav``. s3prl does not read
  ``validation_list.txt``: it assigns a training-root file to validation when the SHA-1 hash of
  the part of its name before ``_nohash_`` falls in the first 10 % (10-20 % is discarded as the
  official test part, the rest is training). File names are therefore chosen so that our train
  utterances hash to training and our dev utterances to validation; ``validation_list.txt`` and
  ``testing_list.txt`` are written too (for other tools). Class folders must be among the 12
  SUPERB classes (other names become ``_unknown_`` in training and fail at test); FSDD digit
  ``d`` is stored in the folder of the ``d``-th keyword (label slots).
* ``ic`` (``fluent_commands``): ``wavs/speakers/<spk>/<utt>.wav`` and
  ``data/{train,valid,test}_data.csv`` with the columns of Fluent Speech Commands (an unnamed
  index, ``path, speakerId, transcription, action, object, location``). Our intent label
  ``action_object_location`` gives the three slots; every slot value of valid/test must occur
  in train (s3prl builds its label set from train).
* ``sid`` (``voxceleb1``): ``{dev,test}/wav/<id1XXXX>/<video>/<utt>.wav`` and
  ``iden_split.txt`` (``1|2|3 <id>/<video>/<utt>.wav`` = train/dev/test). s3prl derives the
  class from the speaker folder name (``id10001`` -> 0), so speakers are renamed
  ``id10001, id10002, ...`` in sorted order (``speakers.tsv`` keeps the mapping).
* ``pr`` (``ctc`` with the ``libriphone`` corpus): ``LibriSpeech/<split>/<spk>/<chapter>/
  <utt>.flac`` with ``<spk>-<chapter>.trans.txt`` whose "words" are the utterance's phone
  tokens (the espeak phoneme strings of the mini corpus), an identity ``lexicon.txt`` (each
  phone pronounced as itself) and ``vocab.txt`` (one phone per line). s3prl's libriphone
  reader maps words to phones through the lexicon, so it yields exactly our phone strings.

For the full tasks, :func:`prepare_full_task` writes what s3prl would otherwise need an
interactive script or a write into the corpus folder for: ASR's length tables
(``len_for_bucket/<subset>.csv``) and IEMOCAP's per-session train/test lists.

Every builder writes ``layout.json`` (what it was built from); a layout whose sources and
options are unchanged is kept, so re-running a recipe stage is cheap and safe.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import soundfile as sf

from compact_ssl.audio import load_audio
from audio_compress.frames import RECEPTIVE_FIELD, SAMPLE_RATE

__all__ = [
    "KS_CLASSES",
    "Utt",
    "LayoutError",
    "speech_commands_split",
    "utterances_from_data_dirs",
    "fsdd_utterances",
    "build_ks_layout",
    "build_ic_layout",
    "build_sid_layout",
    "build_pr_layout",
    "build_layouts",
    "build_mini_layouts",
    "build_fsdd_layouts",
    "write_len_for_bucket",
    "prepare_iemocap_meta",
    "prepare_full_task",
]

#: Version of the layout writer; bump when its output changes (forces a rebuild).
LAYOUT_VERSION = 1
#: The 10 keywords of SUPERB KS, in s3prl's class order (then ``_unknown_``, ``_silence_``).
KS_CLASSES = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SPLITS = ("train", "dev", "test")
NONE = "_none_"


class LayoutError(ValueError):
    """Input data that cannot be written in the layout a task expects."""


@dataclass(frozen=True)
class Utt:
    """One utterance of a source corpus, with the labels the mini tasks use.

    ``split`` is train / dev / test; ``video`` groups a speaker's utterances (VoxCeleb's video
    folder; the chapter for LibriSpeech-style ids); ``keyword`` / ``intent`` / ``phones`` are
    ``None`` when the utterance has no such label.
    """

    utt_id: str
    speaker: str
    split: str
    wav: str
    video: str = "v0"
    keyword: str | None = None
    intent: str | None = None
    phones: str | None = None
    text: str | None = None


# ------------------------------------------------------------------------------ sources

def _read_map(path: Path) -> dict[str, str]:
    from audio_compress.data.kaldi import read_kaldi_map

    return read_kaldi_map(path, allow_empty=True) if path.is_file() else {}


def utterances_from_data_dirs(data_dirs: Mapping[str, str | Path]) -> list[Utt]:
    """Utterances of Kaldi data dirs ``{"train": dir, "dev": dir, "test": dir}`` (the mini
    corpus's: ``utt2keyword``, ``utt2intent``, ``phn`` and ``text`` are read when present;
    ``_none_`` means no label). The chapter (second field of a LibriSpeech id
    ``spk-chapter-n``) is the "video"."""
    from audio_compress.data.kaldi import DataDir

    utts: list[Utt] = []
    for split in SPLITS:
        if split not in data_dirs:
            raise LayoutError(f"no data dir given for split {split!r}")
        path = Path(data_dirs[split])
        dd = DataDir.read(path)
        kw, intent, phn = (_read_map(path / n) for n in ("utt2keyword", "utt2intent", "phn"))
        text = dd.text or {}
        for utt in dd.utt_ids:
            parts = utt.split("-")
            utts.append(Utt(
                utt_id=utt, speaker=dd.utt2spk[utt], split=split, wav=dd.wav_scp[utt],
                video=parts[1] if len(parts) >= 3 else "v0",
                keyword=kw.get(utt) if kw.get(utt, NONE) != NONE else None,
                intent=intent.get(utt) if intent.get(utt, NONE) != NONE else None,
                phones=phn.get(utt) or None, text=text.get(utt)))
    return utts


_FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")


def fsdd_utterances(fsdd_root: str | Path, train_per_cell: int = 6, dev_per_cell: int = 2,
                    test_per_cell: int = 2, speakers: Sequence[str] | None = None) -> list[Utt]:
    """Free Spoken Digit Dataset utterances (``recordings/{digit}_{speaker}_{index}.wav``),
    subsampled per (digit, speaker): test from the official test part (index 0-4), train and
    dev from the official train part (index 5-49, dev taken from its end). The keyword of digit
    ``d`` is ``KS_CLASSES[d]`` (a label slot). Deterministic."""
    rec = Path(fsdd_root) / "recordings"
    if not rec.is_dir():
        raise LayoutError(f"{rec} does not exist; expected the FSDD recordings/ folder")
    cells: dict[tuple[int, str], list[tuple[int, Path]]] = {}
    for f in sorted(rec.iterdir()):
        m = _FSDD_NAME.match(f.name)
        if m:
            cells.setdefault((int(m.group(1)), m.group(2)), []).append((int(m.group(3)), f))
    if not cells:
        raise LayoutError(f"no {{digit}}_{{speaker}}_{{index}}.wav files in {rec}")
    utts = []
    for (digit, spk), files in sorted(cells.items()):
        if speakers is not None and spk not in speakers:
            continue
        files.sort()
        test = [x for x in files if x[0] <= 4][:test_per_cell]
        rest = [x for x in files if x[0] >= 5]
        train, dev = rest[:train_per_cell], rest[len(rest) - dev_per_cell:] if dev_per_cell else []
        if len(train) + len(dev) > len(rest):
            raise LayoutError(f"digit {digit} speaker {spk}: only {len(rest)} train-part files")
        for split, chosen in (("train", train), ("dev", dev), ("test", test)):
            for idx, path in chosen:
                utts.append(Utt(utt_id=f"{spk}-{digit}-{idx:02d}", speaker=spk, split=split,
                                wav=str(path), video=f"digit{digit}", keyword=KS_CLASSES[digit],
                                text=str(digit)))
    return utts


# ------------------------------------------------------------------------------ helpers

def _write_wav(path: Path, wav: np.ndarray, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wav, SAMPLE_RATE, subtype="PCM_16", format=fmt)


def _load(utt: Utt) -> np.ndarray:
    return load_audio(utt.wav, sample_rate=SAMPLE_RATE, resample=True, min_samples=RECEPTIVE_FIELD)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", name)


def speech_commands_split(file_name: str, validation_percent: float = 10.0,
                          testing_percent: float = 10.0) -> str:
    """Which part of a Speech Commands training root s3prl assigns ``file_name`` to
    (``"validation"``, ``"testing"`` (discarded by s3prl) or ``"training"``): the SHA-1 of the
    name before ``_nohash_``, as an integer modulo 2**27, scaled to a percentage."""
    stem = re.sub(r"_nohash_.*$", "", file_name)
    max_per_class = 2 ** 27 - 1
    value = int(hashlib.sha1(stem.encode("utf-8")).hexdigest(), 16)
    percent = (value % (max_per_class + 1)) * (100.0 / max_per_class)
    if percent < validation_percent:
        return "validation"
    if percent < validation_percent + testing_percent:
        return "testing"
    return "training"


def _sc_name(utt_id: str, want: str) -> str:
    """A ``<prefix>_nohash_0.wav`` name for ``utt_id`` that s3prl puts in part ``want``."""
    base = _safe(utt_id)
    for salt in range(100000):
        name = f"{base}x{salt}_nohash_0.wav"
        if speech_commands_split(name) == want:
            return name
    raise LayoutError(f"no file name found for {utt_id} in part {want}")  # pragma: no cover


def _noise(rng: np.random.Generator, seconds: float, kind: int) -> np.ndarray:
    n = int(seconds * SAMPLE_RATE)
    if kind % 3 == 0:
        x = rng.standard_normal(n)
    elif kind % 3 == 1:  # brown-ish noise
        x = np.cumsum(rng.standard_normal(n))
        x -= np.convolve(x, np.ones(801) / 801, mode="same")
    else:  # mains hum with noise
        t = np.arange(n) / SAMPLE_RATE
        x = np.sin(2 * np.pi * 50 * t) + 0.5 * np.sin(2 * np.pi * 100 * t) + 0.3 * rng.standard_normal(n)
    x = x / (np.abs(x).max() + 1e-9)
    return (x * rng.uniform(0.003, 0.03)).astype(np.float32)


def _signature(utts: Sequence[Utt], options: Mapping) -> str:
    h = hashlib.sha1()
    h.update(json.dumps({"version": LAYOUT_VERSION, "options": options}, sort_keys=True).encode())
    for u in utts:
        h.update(json.dumps(asdict(u), sort_keys=True).encode())
        try:
            st = os.stat(u.wav)
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        except OSError:
            h.update(b"missing")
    return h.hexdigest()


def _fresh(out: Path, signature: str) -> bool:
    marker = out / "layout.json"
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("signature") == signature
    except (OSError, json.JSONDecodeError):
        return False


def _start(out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)


def _finish(out: Path, signature: str, summary: Mapping) -> dict:
    doc = {"signature": signature, "layout_version": LAYOUT_VERSION, **summary}
    tmp = out / "layout.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, out / "layout.json")
    return doc


def _by_split(utts: Iterable[Utt]) -> dict[str, list[Utt]]:
    out: dict[str, list[Utt]] = {s: [] for s in SPLITS}
    for u in utts:
        out[u.split].append(u)
    return out


# ------------------------------------------------------------------------------ builders

def build_ks_layout(utts: Sequence[Utt], out: str | Path, noise_files: int = 3,
                    silence_test_files: int = 4, seed: int = 0) -> dict:
    """Speech Commands layout for ``speech_commands`` from the utterances with a keyword."""
    out = Path(out)
    utts = [u for u in utts if u.keyword]
    bad = sorted({u.keyword for u in utts} - set(KS_CLASSES))
    if bad:
        raise LayoutError(f"keywords {bad} are not SUPERB KS classes {list(KS_CLASSES)}")
    parts = _by_split(utts)
    for split in SPLITS:
        if not parts[split]:
            raise LayoutError(f"no keyword utterances in the {split} split")
    options = {"task": "ks", "noise_files": noise_files, "silence_test_files": silence_test_files,
               "seed": seed}
    sig = _signature(utts, options)
    if _fresh(out, sig):
        return json.loads((out / "layout.json").read_text())
    _start(out)
    lists = {"validation": [], "testing": []}
    for split, want in (("train", "training"), ("dev", "validation")):
        for u in parts[split]:
            name = _sc_name(u.utt_id, want)
            _write_wav(out / "train" / u.keyword / name, _load(u))
            if want == "validation":
                lists["validation"].append(f"{u.keyword}/{name}")
    for u in parts["test"]:
        _write_wav(out / "test" / u.keyword / f"{_safe(u.utt_id)}_nohash_0.wav", _load(u))
    rng = np.random.default_rng(seed)
    for k in range(noise_files):
        _write_wav(out / "train" / "_background_noise_" / f"noise{k}.wav", _noise(rng, 3.0, k))
    for k in range(silence_test_files):
        _write_wav(out / "test" / "_silence_" / f"silence{k}_nohash_0.wav", _noise(rng, 1.0, k))
    (out / "train" / "validation_list.txt").write_text("".join(f"{x}\n" for x in sorted(lists["validation"])))
    (out / "train" / "testing_list.txt").write_text("")
    test_classes = sorted({u.keyword for u in parts["test"]} | ({"_silence_"} if silence_test_files else set()))
    return _finish(out, sig, {
        "task": "ks", "train_root": str(out / "train"), "test_root": str(out / "test"),
        "counts": {"train": len(parts["train"]), "dev": len(parts["dev"]),
                   "test": len(parts["test"]) + silence_test_files, "background_noise": noise_files},
        "test_classes": test_classes,
    })


def build_ic_layout(utts: Sequence[Utt], out: str | Path) -> dict:
    """Fluent Speech Commands layout for ``fluent_commands`` from the utterances with an intent."""
    import pandas as pd

    out = Path(out)
    utts = [u for u in utts if u.intent]
    parts = _by_split(utts)
    for split in SPLITS:
        if not parts[split]:
            raise LayoutError(f"no intent utterances in the {split} split")
    slots = {}
    for u in utts:
        fields = u.intent.split("_")
        if len(fields) != 3:
            raise LayoutError(f"{u.utt_id}: intent {u.intent!r} is not action_object_location")
        slots[u.utt_id] = fields
    train_values = [set(slots[u.utt_id][i] for u in parts["train"]) for i in range(3)]
    for split in ("dev", "test"):
        for u in parts[split]:
            for i, name in enumerate(("action", "object", "location")):
                if slots[u.utt_id][i] not in train_values[i]:
                    raise LayoutError(f"{u.utt_id} ({split}): {name} {slots[u.utt_id][i]!r} never "
                                      "occurs in train; s3prl cannot encode it")
    sig = _signature(utts, {"task": "ic"})
    if _fresh(out, sig):
        return json.loads((out / "layout.json").read_text())
    _start(out)
    (out / "data").mkdir()
    for split, csv_name in (("train", "train_data.csv"), ("dev", "valid_data.csv"), ("test", "test_data.csv")):
        rows = []
        for u in parts[split]:
            rel = Path("wavs") / "speakers" / _safe(u.speaker) / f"{_safe(u.utt_id)}.wav"
            _write_wav(out / rel, _load(u))
            action, obj, location = slots[u.utt_id]
            rows.append({"path": str(rel), "speakerId": u.speaker,
                         "transcription": (u.text or "").lower(), "action": action,
                         "object": obj, "location": location})
        pd.DataFrame(rows, columns=["path", "speakerId", "transcription", "action", "object",
                                    "location"]).to_csv(out / "data" / csv_name)
    return _finish(out, sig, {"task": "ic", "file_path": str(out),
                              "counts": {s: len(parts[s]) for s in SPLITS},
                              "intents": sorted({u.intent for u in utts})})


def build_sid_layout(utts: Sequence[Utt], out: str | Path) -> dict:
    """VoxCeleb1 layout + ``iden_split.txt`` for ``voxceleb1`` (all utterances)."""
    out = Path(out)
    parts = _by_split(utts)
    for split in SPLITS:
        if not parts[split]:
            raise LayoutError(f"no utterances in the {split} split")
    speakers = sorted({u.speaker for u in utts})
    unseen = sorted({u.speaker for u in parts["test"] + parts["dev"]} - {u.speaker for u in parts["train"]})
    if unseen:
        raise LayoutError(f"speaker(s) {unseen} have no training utterance; speaker "
                          "identification needs every speaker in train")
    ids = {spk: f"id{10001 + i}" for i, spk in enumerate(speakers)}
    sig = _signature(utts, {"task": "sid"})
    if _fresh(out, sig):
        return json.loads((out / "layout.json").read_text())
    _start(out)
    lines = []
    for split, code, folder in (("train", 1, "dev"), ("dev", 2, "dev"), ("test", 3, "test")):
        for u in parts[split]:
            rel = f"{ids[u.speaker]}/{_safe(u.video)}/{_safe(u.utt_id)}.wav"
            _write_wav(out / folder / "wav" / rel, _load(u))
            lines.append(f"{code} {rel}\n")
    (out / "iden_split.txt").write_text("".join(lines))
    (out / "speakers.tsv").write_text("".join(f"{ids[s]}\t{s}\n" for s in speakers))
    return _finish(out, sig, {"task": "sid", "file_path": str(out),
                              "meta_data": str(out / "iden_split.txt"),
                              "num_speakers": len(speakers),
                              "counts": {s: len(parts[s]) for s in SPLITS}})


def build_pr_layout(utts: Sequence[Utt], out: str | Path) -> dict:
    """LibriSpeech-style phone-transcript layout for ``ctc`` + ``libriphone``."""
    out = Path(out)
    utts = [u for u in utts if u.phones]
    parts = _by_split(utts)
    for split in SPLITS:
        if not parts[split]:
            raise LayoutError(f"no utterances with phone transcripts (phn) in the {split} split")
    for u in utts:
        if not re.fullmatch(r"[^-\s]+-[^-\s]+-[^-\s]+", u.utt_id):
            raise LayoutError(f"{u.utt_id}: phoneme recognition needs LibriSpeech-style ids "
                              "<speaker>-<chapter>-<n> (s3prl finds the transcript from the name)")
    sig = _signature(utts, {"task": "pr"})
    if _fresh(out, sig):
        return json.loads((out / "layout.json").read_text())
    _start(out)
    phones: set[str] = set()
    for split in SPLITS:
        chapters: dict[Path, list[str]] = {}
        for u in parts[split]:
            spk, chapter, _ = u.utt_id.split("-")
            folder = out / "LibriSpeech" / split / spk / chapter
            _write_wav(folder / f"{u.utt_id}.flac", _load(u), fmt="FLAC")
            tokens = u.phones.split()
            phones.update(tokens)
            chapters.setdefault(folder, []).append(f"{u.utt_id} {' '.join(tokens)}\n")
        for folder, lines in chapters.items():
            spk, chapter = folder.parent.name, folder.name
            (folder / f"{spk}-{chapter}.trans.txt").write_text("".join(sorted(lines)))
    vocab = sorted(phones)
    (out / "vocab.txt").write_text("".join(f"{p}\n" for p in vocab))
    (out / "lexicon.txt").write_text("".join(f"{p} {p}\n" for p in vocab))
    return _finish(out, sig, {"task": "pr", "path": str(out / "LibriSpeech"),
                              "splits": list(SPLITS), "num_phones": len(vocab),
                              "counts": {s: len(parts[s]) for s in SPLITS}})


BUILDERS = {"ks": build_ks_layout, "ic": build_ic_layout, "sid": build_sid_layout,
            "pr": build_pr_layout}


def build_layouts(utts: Sequence[Utt], out: str | Path, tasks: Iterable[str] = ("pr", "ks", "sid", "ic")
                  ) -> dict[str, dict]:
    """Build the layouts of ``tasks`` under ``out/<task>/``; returns their ``layout.json``."""
    out = Path(out)
    result = {}
    for task in tasks:
        if task not in BUILDERS:
            raise LayoutError(f"no mini layout for task {task!r}; available: {', '.join(BUILDERS)}")
        result[task] = BUILDERS[task](utts, out / task)
    return result


def build_mini_layouts(data_dirs: Mapping[str, str | Path], out: str | Path,
                       tasks: Iterable[str] = ("pr", "ks", "sid", "ic")) -> dict[str, dict]:
    """All mini SUPERB layouts from the mini corpus's data dirs (train/dev/test)."""
    return build_layouts(utterances_from_data_dirs(data_dirs), out, tasks)


def build_fsdd_layouts(fsdd_root: str | Path, out: str | Path, tasks: Iterable[str] = ("ks", "sid"),
                       **subsample) -> dict[str, dict]:
    """KS (digits as keyword slots) and SID (6 speakers) layouts from FSDD."""
    return build_layouts(fsdd_utterances(fsdd_root, **subsample), out, tasks)


# ------------------------------------------------------------------------------ full tasks

def write_len_for_bucket(libri_root: str | Path, subsets: Iterable[str], out: str | Path,
                         ext: str = ".flac") -> Path:
    """s3prl's ASR length tables: ``out/<subset>.csv`` with an unnamed index column,
    ``file_path`` (relative to ``libri_root``), ``length`` (samples) and ``label`` (empty),
    sorted by length, longest first. Existing tables are kept."""
    libri_root, out = Path(libri_root), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for subset in subsets:
        target = out / f"{subset}.csv"
        if target.is_file():
            continue
        files = sorted((libri_root / subset).rglob(f"*{ext}"))
        if not files:
            raise LayoutError(f"no {ext} files under {libri_root / subset}")
        rows = sorted(((str(f.relative_to(libri_root)), sf.info(str(f)).frames) for f in files),
                      key=lambda r: -r[1])
        tmp = target.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["", "file_path", "length", "label"])
            for i, (path, n) in enumerate(rows):
                w.writerow([i, path, n, ""])
        os.replace(tmp, target)
    return out


def prepare_iemocap_meta(iemocap_root: str | Path, out: str | Path) -> Path:
    """Per-session ``out/SessionK/{train,test}_meta_data.json`` with s3prl's own IEMOCAP
    preprocessing functions, written outside the corpus folder. Existing lists are kept."""
    from s3prl.downstream.emotion import IEMOCAP_preprocess as pre

    root, out = Path(iemocap_root), Path(out)
    sessions = sorted(p.name for p in root.iterdir() if p.name.startswith("Session"))
    if not sessions:
        raise LayoutError(f"no Session* folders in {root}")
    for i, session in enumerate(sessions):
        folder = out / session
        if (folder / "test_meta_data.json").is_file() and (folder / "train_meta_data.json").is_file():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        pre.preprocess(str(root), sessions[:i] + sessions[i + 1:], str(folder / "train_meta_data.json"))
        pre.preprocess(str(root), [session], str(folder / "test_meta_data.json"))
    return out


def prepare_full_task(task: str, roots: Mapping[str, Path], work: str | Path) -> None:
    """Derived metadata a full task needs before training (ASR length tables, IEMOCAP lists)."""
    work = Path(work)
    if task == "asr":
        lib = Path(roots["LIBRISPEECH"])
        lib = lib / "LibriSpeech" if (lib / "LibriSpeech").is_dir() else lib
        write_len_for_bucket(lib, ("train-clean-100", "dev-clean", "test-clean"),
                             work / "asr" / "len_for_bucket")
    elif task == "er":
        prepare_iemocap_meta(roots["IEMOCAP"], work / "er" / "meta_data")
