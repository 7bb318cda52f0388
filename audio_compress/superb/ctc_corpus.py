"""Phoneme-recognition corpus reader for s3prl's ``ctc`` downstream, used when s3prl's own
``downstream/ctc/corpus`` package is unavailable (the PyPI wheel of s3prl 0.4.18 lacks it and
no clone was given; see :mod:`audio_compress.superb.runner`).

It reads the same inputs as s3prl's ``libriphone`` corpus (config keys of
``downstream_expert.corpus``): ``path`` (a LibriSpeech-layout folder), the split names given
by ``train`` / ``dev`` / ``test`` (lists of subset folders), and ``lexicon`` (a list of
``WORD PHONE PHONE ...`` files; the first pronunciation of a word wins). Every ``*.flac``
under ``<path>/<subset>`` is an utterance; its words come from the chapter's
``<spk>-<chapter>.trans.txt`` and are mapped through the lexicon to phone tokens, which the
``word``-mode tokenizer (``text.vocab_file``, one phone per line) encodes. Items are sorted by
label length (longest first unless ``ascending``); with ``bucket_size > 1`` an item is a list of
``bucket_size`` consecutive utterances (one batch), as s3prl's ``collect_audio_batch`` expects.

The mini SUPERB layout (:func:`audio_compress.superb.layouts.build_pr_layout`) stores the
espeak phoneme strings of our mini corpus as the transcripts with an identity lexicon (each
phone token is a "word" pronounced as itself), so this reader and s3prl's own one give the same
labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from torch.utils.data import Dataset

__all__ = ["LibriPhoneDataset", "read_lexicons", "UnknownWordError"]


class UnknownWordError(KeyError):
    """A transcript word that no lexicon file pronounces."""


def read_lexicons(files: Iterable[str | Path], vocab: set[str] | None = None) -> dict[str, list[str]]:
    """``word -> phones`` from lexicon files; the first entry of a word wins. With ``vocab``
    every phone must be in it."""
    if isinstance(files, (str, Path)):
        files = [files]
    lexicon: dict[str, list[str]] = {}
    for file in files:
        with open(file, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                fields = line.replace("\t", " ").split()
                if not fields:
                    continue
                word, phones = fields[0], fields[1:]
                if vocab is not None:
                    bad = [p for p in phones if p not in vocab]
                    if bad:
                        raise ValueError(f"{file}:{lineno}: phone(s) {bad} of {word!r} are not in "
                                         "the vocabulary file")
                lexicon.setdefault(word, phones)
    return lexicon


def _transcripts(chapter_dir: Path, cache: dict[Path, dict[str, str]]) -> dict[str, str]:
    if chapter_dir not in cache:
        table: dict[str, str] = {}
        for trans in chapter_dir.glob("*.trans.txt"):
            for line in trans.read_text(encoding="utf-8").splitlines():
                utt, _, text = line.strip().partition(" ")
                if utt:
                    table[utt] = text
        cache[chapter_dir] = table
    return cache[chapter_dir]


class LibriPhoneDataset(Dataset):
    """See the module docstring. ``split`` is a list of subset folder names under ``path``."""

    def __init__(self, split: Sequence[str], tokenizer, bucket_size: int, path: str,
                 lexicon: Sequence[str], ascending: bool = False, **kwargs):
        if isinstance(split, str):
            split = [split]
        vocab = set(getattr(tokenizer, "_vocab2idx", {}) or []) or None
        words = read_lexicons(lexicon, vocab)
        root = Path(path)
        cache: dict[Path, dict[str, str]] = {}
        items = []
        for subset in split:
            files = sorted((root / subset).rglob("*.flac"))
            if not files:
                raise FileNotFoundError(f"no .flac files under {root / subset}")
            for file in files:
                table = _transcripts(file.parent, cache)
                if file.stem not in table:
                    raise KeyError(f"{file}: no transcript line for {file.stem} in "
                                   f"{file.parent}/*.trans.txt")
                phones: list[str] = []
                for word in table[file.stem].split():
                    if word not in words:
                        raise UnknownWordError(f"{file}: word {word!r} is in no lexicon file "
                                               f"({', '.join(map(str, lexicon))})")
                    phones += words[word]
                items.append((str(file), tokenizer.encode(" ".join(phones))))
        items.sort(key=lambda item: len(item[1]), reverse=not ascending)
        self.bucket_size = int(bucket_size)
        self.file_list = [f for f, _ in items]
        self.text = [t for _, t in items]

    def __len__(self) -> int:
        return len(self.file_list)

    def __getitem__(self, index: int):
        if self.bucket_size > 1:
            start = max(0, min(index, len(self.file_list) - self.bucket_size))
            stop = start + self.bucket_size
            return list(zip(self.file_list[start:stop], self.text[start:stop]))
        return self.file_list[index], self.text[index]
