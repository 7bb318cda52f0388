"""Cycle manifests: the output of data preparation, one TSV per split (``cycles.tsv``).

Columns: ``id recording audio start end crackle wheeze label patient device annotation line``.
``audio`` is the absolute path of the recording (possibly under its zip name, see
:func:`audio_cls.data.icbhi.resolve_recording`); ``recording`` is the split-file name;
``annotation`` and ``line`` are the annotation file and 1-based line the cycle came from, so that
later stages (feature caching) name them in their errors.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from audio_cls.data.icbhi import CLASS_NAMES, IcbhiError
from compact_ssl.io import atomic_path


@dataclass(frozen=True)
class CycleRecord:
    """One respiratory cycle of the corpus."""

    id: str
    recording: str
    audio: str
    start: float
    end: float
    crackle: int
    wheeze: int
    label: int
    patient: int
    device: str
    annotation: str  #: absolute path of the annotation .txt
    line: int  #: 1-based line of the cycle in ``annotation``

    @property
    def source(self) -> str:
        """``annotation:line``, for error messages."""
        return f"{self.annotation}:{self.line}"


COLUMNS = tuple(f.name for f in fields(CycleRecord))
_TYPES = {f.name: f.type for f in fields(CycleRecord)}  # type names (postponed annotations)
_CASTS = {"float": float, "int": int}


def write_manifest(records: list[CycleRecord], path: str | Path) -> None:
    """Write ``records`` as TSV with a header, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        for record in records:
            writer.writerow(asdict(record))


def read_manifest(path: str | Path) -> list[CycleRecord]:
    """Read a manifest written by :func:`write_manifest`; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise IcbhiError(path, "cycle manifest not found; run data preparation (recipe stage 1) first")
    with open(path, newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise IcbhiError(path, f"header must be {COLUMNS}, got {reader.fieldnames}; the manifest is from an "
                             "older version or was edited: rerun data preparation (recipe stage 1)", 1)
        records = []
        for number, row in enumerate(reader, start=2):
            try:
                values = {k: _CASTS.get(_TYPES[k], str)(v) for k, v in row.items()}
            except (TypeError, ValueError) as err:
                raise IcbhiError(path, f"malformed row ({err})", number) from None
            if not 0 <= values["label"] < len(CLASS_NAMES):
                raise IcbhiError(path, f"label must be 0..{len(CLASS_NAMES) - 1}, got {values['label']}", number)
            record = CycleRecord(**values)
            if not 0 <= record.start < record.end:
                raise IcbhiError(path, f"cycle {record.start}-{record.end} s of {record.source} does not satisfy "
                                 "0 <= start < end; fix the annotation and rerun data preparation (recipe stage 1)",
                                 number)
            records.append(record)
    if not records:
        raise IcbhiError(path, "the manifest has no cycles")
    return records


def manifest_digest(path: str | Path) -> str:
    """SHA-1 of the manifest's bytes (part of the feature-cache key)."""
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def class_counts(records: list[CycleRecord], num_classes: int = len(CLASS_NAMES)) -> list[int]:
    """Cycles per class (4 classes, or 2: normal vs any abnormal)."""
    counts = [0] * num_classes
    for record in records:
        counts[map_label(record.label, num_classes)] += 1
    return counts


def map_label(label: int, num_classes: int) -> int:
    """4-class label -> the label of a ``num_classes`` task (2: any abnormal class becomes 1)."""
    if num_classes == len(CLASS_NAMES):
        return label
    if num_classes == 2:
        return int(label > 0)
    raise ValueError(f"num_classes must be 4 or 2, got {num_classes}")
