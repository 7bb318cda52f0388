"""Kaldi-style data directories: plain-text ``key value`` files.

Format (as in Kaldi / ESPnet ``data/<set>/``):

* one entry per line, ``<key> <value>\\n``, UTF-8; the key is everything before the first
  space and may not contain whitespace; the value is everything after that space and may
  contain spaces (never a newline);
* lines sorted by key in C-locale order (byte order of the UTF-8 encoding, which for
  Python strings equals code-point order, so ``sorted(keys)``);
* no duplicate keys.

A data directory holds ``wav.scp`` (utt-id -> absolute audio path), ``utt2spk``,
``spk2utt`` (derived from ``utt2spk``: speakers sorted, each speaker's utterances sorted),
optionally ``text``, ``utt2num_samples`` and any number of extra per-utterance files
(``phn``, ``utt2keyword``, ``utt2intent``, ``utt2sr``, ...).

Which files in a directory are per-utterance maps: every regular file whose name has no
``.`` (so ``bad_audio.txt``, ``corpus.json`` are not), except ``spk2*``, ``reco2*``,
``segments`` and ``feats_type``. Segmented data (``segments``) is not supported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from compact_ssl.io import atomic_write_text

__all__ = [
    "KaldiFormatError",
    "DataDirError",
    "DataDir",
    "write_kaldi_map",
    "read_kaldi_map",
    "write_kaldi_lists",
    "read_kaldi_lists",
    "spk2utt_from_utt2spk",
    "is_utterance_file",
    "validate_data_dir",
]

#: Files of a data dir that are not keyed by utterance although they have no extension.
NON_UTTERANCE_FILES = frozenset({"segments", "feats_type"})
NON_UTTERANCE_PREFIXES = ("spk2", "reco2")
#: The standard per-utterance files handled as attributes of :class:`DataDir`.
STANDARD_FILES = ("wav.scp", "text", "utt2spk", "spk2utt", "utt2num_samples")


class KaldiFormatError(ValueError):
    """A malformed Kaldi file; the message names ``file:line``."""

    def __init__(self, path: str | Path, line: int | None, problem: str):
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


class DataDirError(ValueError):
    """An inconsistent data directory (key sets, speakers, missing files)."""


def _check_key(key: str, path: str | Path, line: int | None = None) -> None:
    if not isinstance(key, str) or key == "":
        raise KaldiFormatError(path, line, f"empty key {key!r}")
    if any(c.isspace() for c in key) or any(ord(c) < 32 for c in key):
        raise KaldiFormatError(
            path, line, f"key {key!r} contains whitespace or control characters; Kaldi keys are "
            "single tokens"
        )


def _check_value(key: str, value: str, path: str | Path) -> None:
    if not isinstance(value, str):
        raise KaldiFormatError(path, None, f"value of key {key!r} is {type(value).__name__}, not str")
    if "\n" in value or "\r" in value:
        raise KaldiFormatError(path, None, f"value of key {key!r} contains a line break")


def write_kaldi_map(path: str | Path, mapping: Mapping[str, object]) -> None:
    """Write ``mapping`` as ``key value`` lines sorted by key (C locale), atomically.

    Values are converted with ``str``. Raises :class:`KaldiFormatError` for keys with
    whitespace or values with line breaks. An empty value is written as ``key `` (key and a
    single space) so that it reads back as ``""`` with ``allow_empty=True``.
    """
    path = Path(path)
    lines = []
    for key in sorted(mapping):
        _check_key(key, path)
        value = str(mapping[key])
        _check_value(key, value, path)
        lines.append(f"{key} {value}\n")
    atomic_write_text(path, "".join(lines))


def write_kaldi_lists(path: str | Path, mapping: Mapping[str, Iterable[str]]) -> None:
    """Write ``key item1 item2 ...`` lines (e.g. ``spk2utt``), keys and items sorted."""
    out = {}
    for key, items in mapping.items():
        items = sorted(items)
        for it in items:
            _check_key(it, path)
        out[key] = " ".join(items)
    write_kaldi_map(path, out)


def read_kaldi_map(path: str | Path, allow_empty: bool = False, check_sorted: bool = False
                   ) -> dict[str, str]:
    """Read a ``key value`` file into a dict (insertion order = file order).

    Args:
        allow_empty: accept lines with a key and no value (value ``""``); otherwise they
            are an error.
        check_sorted: also require the keys to be in C-locale order.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        KaldiFormatError: naming ``file:line`` for a blank line, a line starting with
            whitespace, a missing value, a duplicate key, unsorted keys (with
            ``check_sorted``) or bytes that are not UTF-8.
    """
    path = Path(path)
    result: dict[str, str] = {}
    first_line: dict[str, int] = {}
    prev = None
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise KaldiFormatError(path, lineno, f"not valid UTF-8 ({err})") from None
            if line.endswith("\n"):
                line = line[:-1]
            if line.endswith("\r"):
                raise KaldiFormatError(path, lineno, "Windows line ending (CR LF); convert the "
                                       "file to Unix line endings")
            if line.strip() == "":
                raise KaldiFormatError(path, lineno, "blank line; expected '<key> <value>'")
            if line[0].isspace():
                raise KaldiFormatError(path, lineno, "line starts with whitespace; expected "
                                       "'<key> <value>'")
            key, sep, value = line.partition(" ")
            if "\t" in key:
                raise KaldiFormatError(path, lineno, f"key {key!r} contains a tab; separate key "
                                       "and value with a single space")
            if not sep or (value == "" and not allow_empty):
                raise KaldiFormatError(path, lineno, f"no value after key {key!r}; expected "
                                       "'<key> <value>'")
            _check_key(key, path, lineno)
            if key in result:
                raise KaldiFormatError(path, lineno, f"duplicate key {key!r} (first on line "
                                       f"{first_line[key]})")
            if check_sorted and prev is not None and key < prev:
                raise KaldiFormatError(path, lineno, f"key {key!r} comes after {prev!r}; the file "
                                       "must be sorted by key in C locale (LC_ALL=C sort)")
            prev = key
            result[key] = value
            first_line[key] = lineno
    return result


def read_kaldi_lists(path: str | Path, check_sorted: bool = False) -> dict[str, list[str]]:
    """Read ``key item1 item2 ...`` lines (e.g. ``spk2utt``) into ``{key: [items]}``."""
    return {k: v.split(" ") for k, v in read_kaldi_map(path, check_sorted=check_sorted).items()}


def spk2utt_from_utt2spk(utt2spk: Mapping[str, str]) -> dict[str, list[str]]:
    """Invert ``utt2spk``: speakers sorted, each speaker's utterances sorted."""
    out: dict[str, list[str]] = {}
    for utt in sorted(utt2spk):
        out.setdefault(utt2spk[utt], []).append(utt)
    return {spk: out[spk] for spk in sorted(out)}


def is_utterance_file(name: str) -> bool:
    """Whether a file named ``name`` in a data dir is a per-utterance Kaldi map."""
    if name == "wav.scp":
        return True
    if name.startswith(".") or "." in name:
        return False
    return name not in NON_UTTERANCE_FILES and not name.startswith(NON_UTTERANCE_PREFIXES)


def _per_utterance_files(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.is_file() and is_utterance_file(p.name))


@dataclass
class DataDir:
    """In-memory Kaldi data directory.

    Attributes:
        wav_scp: utt-id -> audio path.
        utt2spk: utt-id -> speaker id.
        text: utt-id -> transcript (``None``: no ``text`` file).
        utt2num_samples: utt-id -> number of samples at 16 kHz (``None``: no file).
        extra: file name -> (utt-id -> value) for further per-utterance files.
    """

    wav_scp: dict[str, str]
    utt2spk: dict[str, str]
    text: dict[str, str] | None = None
    utt2num_samples: dict[str, int] | None = None
    extra: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def utt_ids(self) -> list[str]:
        return sorted(self.wav_scp)

    @property
    def spk2utt(self) -> dict[str, list[str]]:
        return spk2utt_from_utt2spk(self.utt2spk)

    def __len__(self) -> int:
        return len(self.wav_scp)

    def subset(self, utt_ids: Iterable[str]) -> DataDir:
        """A new data dir restricted to ``utt_ids``."""
        keep = set(utt_ids)

        def sel(m):
            return None if m is None else {k: v for k, v in m.items() if k in keep}

        return DataDir(sel(self.wav_scp), sel(self.utt2spk), sel(self.text),
                       sel(self.utt2num_samples), {n: sel(m) for n, m in self.extra.items()})

    def write(self, path: str | Path, remove_stale: bool = True) -> Path:
        """Write all files into directory ``path`` (created if needed), each atomically.

        With ``remove_stale`` per-utterance files left from an earlier write that are not
        part of this data dir (e.g. an old ``phn``) are deleted, so that the directory stays
        consistent when a preparation stage is re-run.
        """
        path = Path(path)
        for name in self.extra:
            if name in STANDARD_FILES or not is_utterance_file(name):
                raise DataDirError(f"extra file name {name!r} is reserved or not a per-utterance "
                                   "file name (no '.', not spk2*/reco2*)")
        path.mkdir(parents=True, exist_ok=True)
        files: dict[str, Mapping] = {"wav.scp": self.wav_scp, "utt2spk": self.utt2spk}
        if self.text is not None:
            files["text"] = self.text
        if self.utt2num_samples is not None:
            files["utt2num_samples"] = self.utt2num_samples
        files.update(self.extra)
        if remove_stale:
            for name in _per_utterance_files(path):
                if name not in files:
                    (path / name).unlink()
        for name, mapping in files.items():
            write_kaldi_map(path / name, mapping)
        write_kaldi_lists(path / "spk2utt", self.spk2utt)
        return path

    @classmethod
    def read(cls, path: str | Path) -> DataDir:
        """Read a data dir (``wav.scp`` and ``utt2spk`` required; everything else optional).

        ``spk2utt`` is not read (it is derived); use :func:`validate_data_dir` to check it.
        """
        path = Path(path)
        if not path.is_dir():
            raise DataDirError(f"data directory {path} does not exist")
        for req in ("wav.scp", "utt2spk"):
            if not (path / req).is_file():
                raise DataDirError(f"{path / req} is missing; a data dir needs wav.scp and utt2spk")
        wav_scp = read_kaldi_map(path / "wav.scp")
        utt2spk = read_kaldi_map(path / "utt2spk")
        text = read_kaldi_map(path / "text", allow_empty=True) if (path / "text").is_file() else None
        num = None
        if (path / "utt2num_samples").is_file():
            num = {}
            p = path / "utt2num_samples"
            for lineno, (k, v) in enumerate(read_kaldi_map(p).items(), start=1):
                try:
                    num[k] = int(v)
                except ValueError:
                    raise KaldiFormatError(p, lineno, f"value {v!r} of {k!r} is not an integer "
                                           "sample count") from None
        extra = {}
        for name in _per_utterance_files(path):
            if name not in STANDARD_FILES:
                extra[name] = read_kaldi_map(path / name, allow_empty=True)
        return cls(wav_scp, utt2spk, text, num, extra)


def _key_diff(name: str, keys: set[str], ref: set[str], limit: int = 20) -> str:
    missing = sorted(ref - keys)
    extra = sorted(keys - ref)
    parts = []
    if missing:
        parts.append(f"{len(missing)} utterance(s) of wav.scp missing from {name}: "
                     + " ".join(missing[:limit]) + (" ..." if len(missing) > limit else ""))
    if extra:
        parts.append(f"{len(extra)} utterance(s) in {name} but not in wav.scp: "
                     + " ".join(extra[:limit]) + (" ..." if len(extra) > limit else ""))
    return "; ".join(parts)


def validate_data_dir(path: str | Path) -> DataDir:
    """Check a data directory and return it.

    Checks: ``wav.scp``, ``utt2spk`` and ``spk2utt`` exist; every file parses and is sorted;
    every per-utterance file has exactly the key set of ``wav.scp``; each utterance id starts
    with its speaker id; ``spk2utt`` equals the one derived from ``utt2spk``;
    ``utt2num_samples`` holds positive integers.

    Raises:
        DataDirError: listing every problem found (offending keys named).
        KaldiFormatError: a file that does not parse (``file:line``).
    """
    path = Path(path)
    if not (path / "spk2utt").is_file():
        raise DataDirError(f"{path / 'spk2utt'} is missing; it is derived from utt2spk "
                           "(DataDir.write creates it)")
    strict = {"wav.scp", "utt2spk", "spk2utt", "utt2num_samples"}
    for name in ["spk2utt"] + _per_utterance_files(path):
        read_kaldi_map(path / name, allow_empty=name not in strict, check_sorted=True)
    dd = DataDir.read(path)
    problems = []
    ref = set(dd.wav_scp)
    if not ref:
        problems.append(f"{path / 'wav.scp'} is empty")
    maps = {"utt2spk": dd.utt2spk}
    if dd.text is not None:
        maps["text"] = dd.text
    if dd.utt2num_samples is not None:
        maps["utt2num_samples"] = dd.utt2num_samples
    maps.update(dd.extra)
    for name, m in maps.items():
        diff = _key_diff(name, set(m), ref)
        if diff:
            problems.append(f"{path / name}: {diff}")
    bad_prefix = sorted(u for u, s in dd.utt2spk.items() if not u.startswith(s))
    if bad_prefix:
        problems.append(
            f"{path / 'utt2spk'}: {len(bad_prefix)} utterance id(s) do not start with their speaker "
            "id (Kaldi needs the speaker as prefix so that sorting agrees): "
            + ", ".join(f"{u} (speaker {dd.utt2spk[u]})" for u in bad_prefix[:20])
            + (" ..." if len(bad_prefix) > 20 else ""))
    spk2utt = read_kaldi_lists(path / "spk2utt")
    if spk2utt != dd.spk2utt:
        derived = dd.spk2utt
        bad = sorted(set(spk2utt) ^ set(derived)
                     | {s for s in set(spk2utt) & set(derived) if spk2utt[s] != derived[s]})
        problems.append(f"{path / 'spk2utt'} does not match utt2spk for speaker(s): "
                        + " ".join(bad[:20]) + (" ..." if len(bad) > 20 else "")
                        + "; regenerate it from utt2spk")
    if dd.utt2num_samples is not None:
        bad = sorted(k for k, v in dd.utt2num_samples.items() if v <= 0)
        if bad:
            problems.append(f"{path / 'utt2num_samples'}: non-positive sample counts for "
                            + " ".join(bad[:20]))
    if problems:
        raise DataDirError(f"invalid data directory {path}:\n  " + "\n  ".join(problems))
    return dd
