"""Derived metadata of the full SUPERB tasks, written outside the corpus folders."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path

import soundfile as sf

from audio_compress.superb.layouts.common import LayoutError
from compact_ssl.io import atomic_path

__all__ = ["prepare_full_task", "prepare_iemocap_meta", "write_len_for_bucket"]


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
        with atomic_path(target) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["", "file_path", "length", "label"])
            for i, (path, n) in enumerate(rows):
                w.writerow([i, path, n, ""])
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
