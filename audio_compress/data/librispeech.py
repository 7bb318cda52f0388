"""LibriSpeech (openslr SLR12) -> Kaldi data directories, with every utterance validated.

Layout read (also what :mod:`audio_compress.data.mini_corpus` writes)::

    <root>/LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac
    <root>/LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>.trans.txt

``root`` may also be the ``LibriSpeech`` folder itself. Each data directory gets ``wav.scp``
(absolute paths), ``text``, ``utt2spk`` (the LibriSpeech speaker, i.e. the first id field),
``spk2utt`` and ``utt2num_samples`` (length at 16 kHz, after resampling when the file has
another rate and ``resample=True``); ``utt2sr`` (original sample rate) is added when some file
is not 16 kHz. A subset carrying the mini corpus's ``metadata.tsv`` also gets ``phn``,
``utt2kind``, ``utt2keyword`` and ``utt2intent``.

Bad input is never dropped silently: with ``on_bad_audio="fail"`` a :class:`BadAudioError`
lists every problem; with ``"skip"`` the utterances are left out, listed in
``<data dir>/bad_audio.txt`` and a warning with the count and that path is printed.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from audio_compress.data.kaldi import DataDir, KaldiFormatError, validate_data_dir
from audio_compress.frames import RECEPTIVE_FIELD, SAMPLE_RATE
from compact_ssl.audio import AudioError, audio_info, load_audio
from compact_ssl.io import atomic_write_text

__all__ = [
    "LIBRISPEECH_SUBSETS",
    "CorpusNotFoundError",
    "BadAudioError",
    "AudioProblem",
    "PrepSummary",
    "find_librispeech_dir",
    "scan_subset",
    "check_audio_file",
    "resampled_length",
    "prepare_librispeech",
]

LIBRISPEECH_SUBSETS = ("train-clean-100", "train-clean-360", "train-other-500", "dev-clean",
                       "dev-other", "test-clean", "test-other")
DOWNLOAD_HINT = (
    "Download LibriSpeech from https://www.openslr.org/12 (SLR12; e.g. dev-clean.tar.gz), "
    "extract it so that <folder>/LibriSpeech/<subset>/ exists, and set LIBRISPEECH=<folder> in "
    "db.sh (or pass --librispeech <folder> to the recipe)."
)
MINI_HINT = ("The '*-mini' subsets are synthesized by 'python -m audio_compress.bin.make_mini_corpus "
             "--out <folder>' (needs espeak-ng); point the root at that <folder>.")
#: Problem kinds beyond :class:`AudioError`'s: a transcript line without its FLAC and a FLAC
#: without a transcript line.
LAYOUT_KINDS = ("missing_audio", "missing_transcript")


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
    """Pair FLACs with transcript lines in one subset folder.

    Returns the paired utterances (sorted by id) and the layout problems: transcript lines
    whose FLAC is missing (``missing_audio``) and FLACs without a transcript line
    (``missing_transcript``).

    Raises:
        KaldiFormatError: a malformed ``*.trans.txt`` line (``file:line``), or a transcript
            utterance id that does not start with ``<spk>-<chapter>-``.
    """
    subset_dir = Path(subset_dir).absolute()
    subset = subset_dir.name
    utts: list[_Utt] = []
    problems: list[AudioProblem] = []
    for spk_dir in sorted(p for p in subset_dir.iterdir() if p.is_dir()):
        spk = spk_dir.name
        for ch_dir in sorted(p for p in spk_dir.iterdir() if p.is_dir()):
            flacs = {}
            texts: dict[str, str] = {}
            for p in sorted(ch_dir.iterdir()):
                if p.name.endswith(".flac") and p.is_file():
                    flacs[p.name[: -len(".flac")]] = p
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
            for utt in sorted(set(texts) - set(flacs)):
                problems.append(AudioProblem(utt, str(ch_dir / f"{utt}.flac"), "missing_audio",
                                             "transcript line has no audio file"))
            for utt in sorted(set(flacs) - set(texts)):
                problems.append(AudioProblem(utt, str(flacs[utt]), "missing_transcript",
                                             f"no transcript line in {ch_dir}/*.trans.txt"))
            for utt in sorted(set(flacs) & set(texts)):
                utts.append(_Utt(utt, spk, str(flacs[utt]), texts[utt], subset))
    utts.sort(key=lambda u: u.utt_id)
    return utts, problems


def resampled_length(num_samples: int, sample_rate: int, target_rate: int = SAMPLE_RATE) -> int:
    """Length after :func:`compact_ssl.audio.resample_audio` (librosa: ceil(n * ratio))."""
    if sample_rate == target_rate:
        return int(num_samples)
    return int(math.ceil(num_samples * (float(target_rate) / sample_rate)))


def check_audio_file(path: str | Path, resample: bool = False, check: str = "full"
                     ) -> tuple[int, int]:
    """Validate one file; returns (samples at 16 kHz, original sample rate).

    ``check="full"`` decodes it with :func:`load_audio` (unreadable, empty, NaN/Inf, wrong
    rate unless ``resample``, shorter than 400 samples); ``"header"`` reads the header only
    (all of those except NaN/Inf).

    Raises:
        AudioError: with ``.kind`` naming the problem.
    """
    info = audio_info(path)
    if check == "full":
        wav = load_audio(path, SAMPLE_RATE, resample=resample, min_samples=RECEPTIVE_FIELD)
        return int(wav.shape[0]), info.sample_rate
    if check != "header":
        raise ValueError(f"check must be 'full' or 'header', not {check!r}")
    if info.num_samples == 0:
        raise AudioError(path, "file contains no samples; remove it from the list", "empty")
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
    return n, info.sample_rate


def _check_worker(args: tuple[str, bool, str]) -> tuple:
    """Pool worker: plain tuples only (AudioError does not survive pickling)."""
    path, resample, check = args
    try:
        n, sr = check_audio_file(path, resample=resample, check=check)
        return ("ok", n, sr)
    except AudioError as err:
        return ("bad", err.kind, err.problem)
    except Exception as err:  # anything the decoder throws: report, do not crash the pool
        return ("bad", "unreadable", f"cannot read audio ({type(err).__name__}: {err})")


def _check_all(utts: list[_Utt], resample: bool, check: str, nj: int, progress: bool) -> list[tuple]:
    from tqdm import tqdm

    args = [(u.path, resample, check) for u in utts]
    bar = tqdm(total=len(args), desc=f"checking audio ({check})", unit="utt", disable=not progress,
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
            ``train_960`` for the three training subsets).
        nj: worker processes for the audio check (1: in this process).
        on_bad_audio: ``"fail"`` raises :class:`BadAudioError` listing every bad utterance;
            ``"skip"`` leaves them out, lists them in ``bad_audio.txt`` (tab-separated
            utt_id, path, kind, problem) in the data dir and prints a warning.
        resample: accept files at other sample rates (lengths are then given at 16 kHz and
            ``utt2sr`` records the original rate); otherwise they are bad (``sample_rate``).
        check: ``"full"`` decodes every file; ``"header"`` reads headers only (fast, cannot
            see NaN/Inf samples).
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
    if check not in ("full", "header"):
        raise ValueError(f"check must be 'full' or 'header', not {check!r}")
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
        raise ValueError(f"no FLAC files found in {', '.join(str(base / s) for s in subsets)}")

    results = _check_all(all_utts, resample, check, nj, progress)
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
        dd.write(data_path)
        bad_path = data_path / "bad_audio.txt"
        if bad:
            _write_bad_list(bad_path, bad)
            print(f"WARNING: {name}: skipped {len(bad)} bad utterance(s); see {bad_path.absolute()}",
                  file=sys.stderr)
        elif bad_path.exists():
            bad_path.unlink()
        validate_data_dir(data_path)
        summaries.append(PrepSummary(
            name=name, path=data_path.absolute(), subsets=list(group), num_utts=len(good),
            num_speakers=len(set(dd.utt2spk.values())),
            num_samples=sum(dd.utt2num_samples.values()), num_bad=len(bad),
            bad_audio_path=bad_path.absolute() if bad else None, extra_files=sorted(dd.extra)))
    return summaries
