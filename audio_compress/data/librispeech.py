"""LibriSpeech (openslr SLR12) -> Kaldi data directories, with every utterance validated.

Layout read (also what :mod:`audio_compress.data.mini_corpus` writes)::

    <root>/LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac   (or .wav)
    <root>/LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>.trans.txt

``root`` may also be the ``LibriSpeech`` folder itself. Audio may be FLAC or WAV (a converted
copy of the corpus); when both ``<utt>.flac`` and ``<utt>.wav`` exist the FLAC is used.

Each data directory gets ``wav.scp`` (absolute paths), ``text``, ``utt2spk`` (the LibriSpeech
speaker, i.e. the first id field), ``spk2utt`` and ``utt2num_samples`` (length at 16 kHz, after
resampling when the file has another rate and ``resample=True``); ``utt2sr`` (original sample
rate) is added when some file is not 16 kHz. A subset carrying the mini corpus's
``metadata.tsv`` also gets ``phn``, ``utt2kind``, ``utt2keyword`` and ``utt2intent``. A data dir
prepared with ``multichannel`` other than ``"refuse"`` records the policy in
``multichannel.txt`` (see :mod:`audio_compress.data.dataset`), so that every later reader makes
the files mono the same way.

Every audio file is checked (``check="full"``: decoded completely, in ``nj`` processes; see
:func:`check_audio_file`). The facts of each file that passed (sample rate, length, channels,
which check) are cached in ``<out_dir>/.audio_check_cache.json``, keyed by (absolute path,
size, mtime_ns) and shared by all data dirs written to ``out_dir``, so a second run over the
same corpus does not decode again; the policy (rate, channels, minimum length) is applied
afresh on every run. Delete the file to force a new check.

A data dir is written into a temporary sibling folder (``<out_dir>/.<name>.tmp<pid>``) and
moved into place only when complete: a failed run leaves an earlier data dir of the same name
untouched and no partial one.

Bad input is never dropped silently: with ``on_bad_audio="fail"`` a :class:`BadAudioError`
lists every problem; with ``"skip"`` the utterances are left out, listed in
``<data dir>/bad_audio.txt`` and a warning with the count and that path is printed.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from audio_compress.data.dataset import MULTICHANNEL_FILE
from audio_compress.data.kaldi import DataDir, KaldiFormatError, validate_data_dir
from audio_compress.frames import RECEPTIVE_FIELD, SAMPLE_RATE
from compact_ssl.audio import MULTICHANNEL_POLICIES, AudioError, AudioInfo, multichannel_problem, verify_audio
from compact_ssl.io import atomic_write_text, replace_folder, write_json

__all__ = [
    "LIBRISPEECH_SUBSETS",
    "AUDIO_EXTENSIONS",
    "CHECK_CACHE_NAME",
    "CorpusNotFoundError",
    "BadAudioError",
    "AudioProblem",
    "PrepSummary",
    "find_librispeech_dir",
    "scan_subset",
    "judge_audio",
    "check_audio_file",
    "resampled_length",
    "prepare_librispeech",
]

LIBRISPEECH_SUBSETS = ("train-clean-100", "train-clean-360", "train-other-500", "dev-clean",
                       "dev-other", "test-clean", "test-other")
DOWNLOAD_HINT = (
    "Download LibriSpeech from https://www.openslr.org/12 (SLR12; e.g. dev-clean.tar.gz), "
    "extract it so that <folder>/LibriSpeech/<subset>/ exists, and set LIBRISPEECH=<folder> in "
    "db.sh (or pass --corpus_root <folder> to the recipe)."
)
MINI_HINT = ("The '*-mini' subsets are synthesized by 'python -m audio_compress.bin.make_mini_corpus "
             "--out <folder>' (needs espeak-ng); point the root at that <folder>.")
#: Problem kinds beyond :class:`AudioError`'s: a transcript line without its audio file and an
#: audio file without a transcript line.
LAYOUT_KINDS = ("missing_audio", "missing_transcript")
#: Audio file extensions looked for, in order of preference.
AUDIO_EXTENSIONS = (".flac", ".wav")
#: Per-file check results, in the output folder next to the data dirs.
CHECK_CACHE_NAME = ".audio_check_cache.json"
CHECK_CACHE_VERSION = 1


class CorpusNotFoundError(FileNotFoundError):
    """The corpus root or a requested subset does not exist."""


@dataclass(frozen=True)
class AudioProblem:
    """One utterance that cannot be used."""

    utt_id: str
    path: str
    kind: str
    problem: str

    def __str__(self) -> str:
        return f"{self.utt_id} {self.path}: [{self.kind}] {self.problem}"


class BadAudioError(ValueError):
    """Bad utterances found with ``on_bad_audio="fail"``; ``.problems`` lists all of them."""

    def __init__(self, problems: Sequence[AudioProblem], where: str):
        self.problems = list(problems)
        lines = "\n  ".join(str(p) for p in self.problems)
        super().__init__(
            f"{len(self.problems)} bad utterance(s) in {where}:\n  {lines}\n"
            "Fix or remove these files, or rerun with on_bad_audio='skip' (--on_bad_audio skip) "
            "to leave them out (they are then listed in bad_audio.txt)."
        )


@dataclass
class PrepSummary:
    """What :func:`prepare_librispeech` wrote for one data directory."""

    name: str
    path: Path
    subsets: list[str]
    num_utts: int
    num_speakers: int
    num_samples: int
    num_bad: int = 0
    bad_audio_path: Path | None = None
    extra_files: list[str] = field(default_factory=list)

    @property
    def hours(self) -> float:
        return self.num_samples / SAMPLE_RATE / 3600.0


@dataclass
class _Utt:
    utt_id: str
    speaker: str
    path: str
    text: str
    subset: str


def find_librispeech_dir(root: str | Path, subsets: Iterable[str] = ()) -> Path:
    """The ``LibriSpeech`` folder under ``root`` (or ``root`` itself), checking ``subsets``.

    Raises:
        CorpusNotFoundError: ``root`` or a subset is missing; says what to download.
    """
    subsets = list(subsets)
    hint = DOWNLOAD_HINT + (" " + MINI_HINT if any(s.endswith("-mini") for s in subsets) else "")
    root = Path(root).expanduser()
    if str(root) in ("", "."):
        raise CorpusNotFoundError(f"no LibriSpeech root given (LIBRISPEECH is empty). {hint}")
    if not root.is_dir():
        raise CorpusNotFoundError(f"LibriSpeech root {root} does not exist. {hint}")
    base = root / "LibriSpeech" if (root / "LibriSpeech").is_dir() else root
    missing = [s for s in subsets if not (base / s).is_dir()]
    if missing:
        have = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
        raise CorpusNotFoundError(
            f"LibriSpeech subset(s) {', '.join(missing)} not found under {base} (looked for "
            f"{', '.join(str(base / s) for s in missing)}; present: {', '.join(have) or 'nothing'}). "
            f"{hint}"
        )
    return base.absolute()


def _read_transcripts(path: Path) -> dict[str, str]:
    texts: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            utt, sep, text = line.partition(" ")
            if not sep or not text.strip() or not utt:
                raise KaldiFormatError(path, lineno, "expected '<utt-id> <TRANSCRIPT>'")
            if utt in texts:
                raise KaldiFormatError(path, lineno, f"duplicate utterance id {utt!r}")
            texts[utt] = text.strip()
    return texts


def scan_subset(subset_dir: str | Path) -> tuple[list[_Utt], list[AudioProblem]]:
    """Pair audio files (``.flac`` or ``.wav``) with transcript lines in one subset folder.

    When both ``<utt>.flac`` and ``<utt>.wav`` exist the FLAC is used (it is what LibriSpeech
    ships; a WAV next to it is taken for a converted copy).

    Returns the paired utterances (sorted by id) and the layout problems: transcript lines
    whose audio file is missing (``missing_audio``) and audio files without a transcript line
    (``missing_transcript``).

    Raises:
        KaldiFormatError: a malformed ``*.trans.txt`` line (``file:line``), or a transcript
            utterance id that does not start with ``<spk>-<chapter>-``.
    """
    subset_dir = Path(subset_dir).absolute()
    subset = subset_dir.name
    utts: list[_Utt] = []
    problems: list[AudioProblem] = []
    looked_for = " or ".join(AUDIO_EXTENSIONS)
    for spk_dir in sorted(p for p in subset_dir.iterdir() if p.is_dir()):
        spk = spk_dir.name
        for ch_dir in sorted(p for p in spk_dir.iterdir() if p.is_dir()):
            audio: dict[str, Path] = {}
            texts: dict[str, str] = {}
            for p in sorted(ch_dir.iterdir()):
                if p.suffix in AUDIO_EXTENSIONS and p.is_file():
                    have = audio.get(p.stem)
                    if have is None or AUDIO_EXTENSIONS.index(p.suffix) < AUDIO_EXTENSIONS.index(have.suffix):
                        audio[p.stem] = p
                elif p.name.endswith(".trans.txt") and p.is_file():
                    for utt, text in _read_transcripts(p).items():
                        if not utt.startswith(f"{spk}-{ch_dir.name}-"):
                            raise KaldiFormatError(
                                p, None, f"utterance id {utt!r} does not start with "
                                f"'{spk}-{ch_dir.name}-' (speaker and chapter folders)")
                        if utt in texts:
                            raise KaldiFormatError(p, None, f"utterance {utt!r} is transcribed "
                                                   "twice in this chapter")
                        texts[utt] = text
            for utt in sorted(set(texts) - set(audio)):
                problems.append(AudioProblem(utt, str(ch_dir / f"{utt}{AUDIO_EXTENSIONS[0]}"), "missing_audio",
                                             f"transcript line has no audio file (looked for {utt}{looked_for} "
                                             f"in {ch_dir})"))
            for utt in sorted(set(audio) - set(texts)):
                problems.append(AudioProblem(utt, str(audio[utt]), "missing_transcript",
                                             f"no transcript line in {ch_dir}/*.trans.txt"))
            for utt in sorted(set(audio) & set(texts)):
                utts.append(_Utt(utt, spk, str(audio[utt]), texts[utt], subset))
    utts.sort(key=lambda u: u.utt_id)
    return utts, problems


def resampled_length(num_samples: int, sample_rate: int, target_rate: int = SAMPLE_RATE) -> int:
    """Length after :func:`compact_ssl.audio.resample_audio` (librosa: ceil(n * ratio))."""
    if sample_rate == target_rate:
        return int(num_samples)
    return int(math.ceil(num_samples * (float(target_rate) / sample_rate)))


def _check_mode(check: str) -> None:
    if check not in ("full", "header"):
        raise ValueError(f"check must be 'full' or 'header', not {check!r}")


def judge_audio(info: AudioInfo, resample: bool = False, multichannel: str = "refuse") -> int:
    """Apply the data policy to the facts of a verified file; returns its length at 16 kHz.

    Raises:
        AudioError: kind ``empty``, ``multichannel`` (several channels and ``"refuse"``),
            ``sample_rate`` (not 16 kHz and not ``resample``) or ``too_short`` (under the
            400-sample receptive field at 16 kHz).
    """
    path = info.path
    if info.num_samples == 0:
        raise AudioError(path, "file contains no samples; remove it from the list", "empty")
    if info.channels > 1 and multichannel == "refuse":
        raise AudioError(path, multichannel_problem(info.channels), "multichannel")
    if info.sample_rate != SAMPLE_RATE and not resample:
        raise AudioError(
            path,
            f"sample rate is {info.sample_rate} Hz, expected {SAMPLE_RATE} Hz; resample the corpus "
            "or enable resampling (resample=True / --resample true)",
            "sample_rate",
        )
    n = resampled_length(info.num_samples, info.sample_rate)
    if n < RECEPTIVE_FIELD:
        raise AudioError(
            path,
            f"only {n} samples at {SAMPLE_RATE} Hz; at least {RECEPTIVE_FIELD} are needed "
            "(shorter audio gives zero frames)",
            "too_short",
        )
    return n


def check_audio_file(path: str | Path, resample: bool = False, check: str = "full",
                     multichannel: str = "refuse") -> tuple[int, int]:
    """Validate one file; returns (samples at 16 kHz, original sample rate).

    ``check="full"`` decodes every sample (:func:`compact_ssl.audio.verify_audio`): unreadable,
    truncated or damaged anywhere, NaN/Inf. ``"header"`` reads the header, compares a WAV's
    declared sizes with the file size and decodes only the last samples: a cut file is still
    found, NaN/Inf and damage in the middle are not. Both then apply :func:`judge_audio`
    (empty, several channels unless ``multichannel`` says how to mix, wrong rate unless
    ``resample``, shorter than 400 samples).

    Raises:
        AudioError: with ``.kind`` naming the problem.
    """
    _check_mode(check)
    info = verify_audio(path, full=check == "full")
    return judge_audio(info, resample, multichannel), info.sample_rate


def _check_worker(args: tuple[str, str]) -> tuple:
    """Pool worker: plain tuples only (AudioError does not survive pickling)."""
    path, check = args
    try:
        info = verify_audio(path, full=check == "full")
        return ("ok", info.sample_rate, info.num_samples, info.channels)
    except AudioError as err:
        return ("bad", err.kind, err.problem)
    except Exception as err:  # anything the decoder throws: report, do not crash the pool
        return ("bad", "unreadable", f"cannot read audio ({type(err).__name__}: {err})")


def _read_check_cache(path: Path) -> dict[str, list]:
    """``{absolute path: [size, mtime_ns, check, sample_rate, num_samples, channels]}``."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        if data.get("version") != CHECK_CACHE_VERSION or not isinstance(data.get("files"), dict):
            raise ValueError(f"not version {CHECK_CACHE_VERSION} of the cache format")
        return data["files"]
    except (OSError, ValueError, AttributeError) as err:
        # only a cache: checking everything again is slow but correct
        print(f"WARNING: ignoring the audio check cache {path} ({err}); every file is checked again "
              "and the cache rewritten", file=sys.stderr)
        return {}


def _cached_info(entry: object, stat: tuple[int, int], check: str, path: str) -> AudioInfo | None:
    """The facts recorded for ``path`` if they apply to the file as it is now and to ``check``."""
    if not isinstance(entry, list) or len(entry) != 6 or tuple(entry[:2]) != stat:
        return None
    level, sample_rate, num_samples, channels = entry[2:]
    # a full check also covers everything the header check looks at
    if level not in ("full", check) or not all(isinstance(v, int) for v in (sample_rate, num_samples, channels)):
        return None
    return AudioInfo(path, sample_rate, num_samples, channels)


def _file_stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None  # the check reports the file as unreadable
    return (st.st_size, st.st_mtime_ns)


def _verify_all(paths: list[str], check: str, nj: int, progress: bool) -> list[tuple]:
    from tqdm import tqdm

    args = [(p, check) for p in paths]
    bar = tqdm(total=len(args), desc=f"checking audio ({check})", unit="file", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    results = []
    try:
        if nj <= 1 or len(args) < 2:
            for a in args:
                results.append(_check_worker(a))
                bar.update()
        else:
            # forkserver: workers are forked from a clean server process, never from a parent
            # that may hold OpenMP / CUDA state.
            method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
            ctx = mp.get_context(method)
            chunksize = max(1, min(64, len(args) // (nj * 8)))
            with ctx.Pool(processes=nj) as pool:
                for r in pool.imap(_check_worker, args, chunksize=chunksize):
                    results.append(r)
                    bar.update()
    finally:
        bar.close()
    return results


def _check_all(utts: list[_Utt], resample: bool, check: str, multichannel: str, nj: int, progress: bool,
               cache_path: Path) -> list[tuple]:
    """``("ok", samples at 16 kHz, sample rate)`` or ``("bad", kind, problem)`` per utterance.

    Files whose facts are in the cache (same size and mtime, checked at least as thoroughly)
    are not decoded again; the cache is updated with what the workers found.
    """
    cache = _read_check_cache(cache_path)
    stats = [_file_stat(u.path) for u in utts]
    facts: list[AudioInfo | tuple[str, str] | None] = [
        None if st is None else _cached_info(cache.get(u.path), st, check, u.path) for u, st in zip(utts, stats)]
    todo = [i for i, f in enumerate(facts) if f is None]
    if todo:
        for i, r in zip(todo, _verify_all([utts[i].path for i in todo], check, nj, progress)):
            path = utts[i].path
            if r[0] == "ok":
                facts[i] = AudioInfo(path, *r[1:])
                if stats[i] is not None:
                    cache[path] = [*stats[i], check, *r[1:]]
            else:
                facts[i] = (r[1], r[2])
                cache.pop(path, None)
        write_json(cache_path, {"version": CHECK_CACHE_VERSION, "files": cache}, indent=None)
    results = []
    for f in facts:
        if isinstance(f, AudioInfo):
            try:
                results.append(("ok", judge_audio(f, resample, multichannel), f.sample_rate))
            except AudioError as err:
                results.append(("bad", err.kind, err.problem))
        else:
            results.append(("bad", *f))
    return results


def _metadata_extras(subset_dir: Path, utt_ids: Iterable[str]) -> dict[str, dict[str, str]] | None:
    meta = subset_dir / "metadata.tsv"
    if not meta.is_file():
        return None
    from audio_compress.data.mini_corpus import read_metadata

    rows = {r["utt_id"]: r for r in read_metadata(meta)}
    extras: dict[str, dict[str, str]] = {"phn": {}, "utt2kind": {}, "utt2keyword": {},
                                         "utt2intent": {}}
    missing = []
    for utt in utt_ids:
        r = rows.get(utt)
        if r is None:
            missing.append(utt)
            continue
        extras["phn"][utt] = r["phonemes"]
        extras["utt2kind"][utt] = r["kind"]
        extras["utt2keyword"][utt] = r["keyword"]
        extras["utt2intent"][utt] = r["intent"]
    if missing:
        raise KaldiFormatError(meta, None, f"{len(missing)} utterance(s) have audio and transcript "
                               f"but no metadata row: {' '.join(missing[:20])}; regenerate the corpus")
    return extras


def _write_bad_list(path: Path, problems: list[AudioProblem]) -> None:
    lines = ["utt_id\tpath\tkind\tproblem"]
    lines += [f"{p.utt_id}\t{p.path}\t{p.kind}\t{p.problem}" for p in problems]
    atomic_write_text(path, "\n".join(lines) + "\n")


def prepare_librispeech(
    root: str | Path,
    subsets: Sequence[str],
    out_dir: str | Path,
    *,
    combine_as: str | None = None,
    nj: int = 4,
    on_bad_audio: str = "fail",
    resample: bool = False,
    check: str = "full",
    multichannel: str = "refuse",
    progress: bool = True,
) -> list[PrepSummary]:
    """Write Kaldi data directories for LibriSpeech ``subsets``.

    One function on purpose: stage 1 in order (scan, check the audio in parallel, report,
    write the data dirs), each step a call to a helper of this module.

    Args:
        root: folder containing ``LibriSpeech/<subset>/`` (or the ``LibriSpeech`` folder).
        subsets: subset folder names, e.g. ``["train-clean-100", "dev-clean"]`` or the mini
            corpus's ``["train-mini", "dev-mini", "test-mini"]``.
        out_dir: data dirs go to ``out_dir/<subset with - replaced by _>``, or to
            ``out_dir/<combine_as>`` as one directory when ``combine_as`` is given (e.g.
            ``train_960`` for the three training subsets). Each is staged in
            ``out_dir/.<name>.tmp<pid>`` and replaces an earlier one only when complete. The
            check cache is ``out_dir/.audio_check_cache.json``.
        nj: worker processes for the audio check (1: in this process).
        on_bad_audio: ``"fail"`` raises :class:`BadAudioError` listing every bad utterance;
            ``"skip"`` leaves them out, lists them in ``bad_audio.txt`` (tab-separated
            utt_id, path, kind, problem) in the data dir and prints a warning.
        resample: accept files at other sample rates (lengths are then given at 16 kHz and
            ``utt2sr`` records the original rate); otherwise they are bad (``sample_rate``).
        check: ``"full"`` decodes every file (cached: an unchanged file is decoded once);
            ``"header"`` reads headers and the end of each file (fast, finds cut files but not
            NaN/Inf samples or damage in the middle).
        multichannel: files with several channels are bad (``"refuse"``, kind
            ``multichannel``), or made mono by averaging (``"mean"``) or keeping channel 0
            (``"first"``); a policy other than refuse is recorded in the data dir's
            ``multichannel.txt`` for the readers of the data dir.
        progress: show a tqdm progress bar on stderr.

    Returns:
        One :class:`PrepSummary` per data directory written.

    Raises:
        CorpusNotFoundError: missing root or subset (says what to download).
        KaldiFormatError: malformed transcript or metadata file.
        BadAudioError: bad utterances with ``on_bad_audio="fail"``.
        ValueError: bad arguments, duplicate utterance ids, or nothing usable left.
    """
    if on_bad_audio not in ("fail", "skip"):
        raise ValueError(f"on_bad_audio must be 'fail' or 'skip', not {on_bad_audio!r}")
    _check_mode(check)
    if multichannel not in MULTICHANNEL_POLICIES:
        raise ValueError(f"multichannel must be one of {', '.join(MULTICHANNEL_POLICIES)}, not {multichannel!r}")
    subsets = list(subsets)
    if not subsets:
        raise ValueError("no subsets given")
    if len(set(subsets)) != len(subsets):
        raise ValueError(f"subset listed twice: {subsets}")
    base = find_librispeech_dir(root, subsets)
    out_dir = Path(out_dir)

    scanned: dict[str, tuple[list[_Utt], list[AudioProblem]]] = {}
    all_utts: list[_Utt] = []
    seen: dict[str, str] = {}
    for s in subsets:
        utts, problems = scan_subset(base / s)
        for u in utts:
            if u.utt_id in seen:
                raise ValueError(f"utterance id {u.utt_id} occurs in subsets {seen[u.utt_id]} and "
                                 f"{s}; ids must be unique")
            seen[u.utt_id] = s
        scanned[s] = (utts, problems)
        all_utts += utts
    if not all_utts and not any(p for _, p in scanned.values()):
        raise ValueError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) found in "
                         f"{', '.join(str(base / s) for s in subsets)}")

    results = _check_all(all_utts, resample, check, multichannel, nj, progress, out_dir / CHECK_CACHE_NAME)
    status = {u.utt_id: r for u, r in zip(all_utts, results)}

    groups = [(combine_as, subsets)] if combine_as else [(s.replace("-", "_"), [s]) for s in subsets]
    per_group_bad: dict[str, list[AudioProblem]] = {}
    for name, group in groups:
        bad = []
        for s in group:
            utts, layout = scanned[s]
            bad += layout
            for u in utts:
                r = status[u.utt_id]
                if r[0] == "bad":
                    bad.append(AudioProblem(u.utt_id, u.path, r[1], r[2]))
        per_group_bad[name] = sorted(bad, key=lambda p: (p.utt_id, p.path))
    all_bad = [p for name, _ in groups for p in per_group_bad[name]]
    if all_bad and on_bad_audio == "fail":
        raise BadAudioError(all_bad, f"LibriSpeech {', '.join(subsets)} under {base}")

    summaries = []
    staged: list[tuple[Path, Path]] = []
    try:
        for name, group in groups:
            good = [u for s in group for u in scanned[s][0] if status[u.utt_id][0] == "ok"]
            bad = per_group_bad[name]
            data_path = out_dir / name
            if not good:
                raise ValueError(f"no usable utterances left for {name} ({len(bad)} bad); "
                                 + "; ".join(str(p) for p in bad[:5]))
            good.sort(key=lambda u: u.utt_id)
            dd = DataDir(
                wav_scp={u.utt_id: u.path for u in good},
                utt2spk={u.utt_id: u.speaker for u in good},
                text={u.utt_id: u.text for u in good},
                utt2num_samples={u.utt_id: status[u.utt_id][1] for u in good},
            )
            if any(status[u.utt_id][2] != SAMPLE_RATE for u in good):
                dd.extra["utt2sr"] = {u.utt_id: str(status[u.utt_id][2]) for u in good}
            extras = [_metadata_extras(base / s, [u.utt_id for u in good if u.subset == s])
                      for s in group]
            if all(e is not None for e in extras):
                for fname in extras[0]:
                    dd.extra[fname] = {k: v for e in extras for k, v in e[fname].items()}
            elif any(e is not None for e in extras):
                print(f"WARNING: {name}: only some of {', '.join(group)} have metadata.tsv; phn/utt2kind/"
                      "utt2keyword/utt2intent are not written", file=sys.stderr)
            tmp = out_dir / f".{name}.tmp{os.getpid()}"
            if tmp.exists():
                shutil.rmtree(tmp)  # left by a killed earlier run with the same pid
            staged.append((tmp, data_path))
            dd.write(tmp)
            if bad:
                _write_bad_list(tmp / "bad_audio.txt", bad)
            if multichannel != "refuse":
                atomic_write_text(tmp / MULTICHANNEL_FILE, multichannel + "\n")
            validate_data_dir(tmp)
            bad_path = data_path / "bad_audio.txt"
            summaries.append(PrepSummary(
                name=name, path=data_path.absolute(), subsets=list(group), num_utts=len(good),
                num_speakers=len(set(dd.utt2spk.values())),
                num_samples=sum(dd.utt2num_samples.values()), num_bad=len(bad),
                bad_audio_path=bad_path.absolute() if bad else None, extra_files=sorted(dd.extra)))
        for tmp, data_path in staged:
            replace_folder(tmp, data_path)
    finally:
        for tmp, _ in staged:
            if tmp.exists():
                shutil.rmtree(tmp)
    for s in summaries:
        if s.num_bad:
            print(f"WARNING: {s.name}: skipped {s.num_bad} bad utterance(s); see {s.bad_audio_path}",
                  file=sys.stderr)
    return summaries
