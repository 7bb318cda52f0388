"""The official ICBHI 60/40 split file: one ``<recording name> <train|test>`` per line.

The split is by recording, not strictly by patient (patients 156 and 218 appear in both sets).
The file as distributed has no final newline; blank lines, CRLF endings and tab-or-space
separation are accepted. Anything else is an error naming the file and line.

:func:`validation_split` carves a patient-disjoint validation set out of the training cycles for
the clean protocol (best epoch chosen on it instead of on the test set).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audio_cls.data.icbhi import IcbhiError, RecordingName
from audio_cls.data.manifest import CycleRecord

SPLITS = ("train", "test")


@dataclass(frozen=True)
class SplitEntry:
    """One line of the split file."""

    recording: str
    split: str
    line: int


def read_split(path: str | Path) -> list[SplitEntry]:
    """Read the split file in file order.

    Raises:
        IcbhiError: unreadable file, a line that is not two fields, an unknown split name, a
            recording name that is not in ICBHI format, or a recording listed twice.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise IcbhiError(path, f"cannot read the split file ({err})") from err
    entries: list[SplitEntry] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise IcbhiError(path, f"expected 'recording<TAB>train|test', got {line.strip()!r}", number)
        name, split = fields
        if split not in SPLITS:
            raise IcbhiError(path, f"split must be one of {SPLITS}, got {split!r}", number)
        try:
            RecordingName.parse(name)
        except ValueError as err:
            raise IcbhiError(path, str(err), number) from None
        if name in seen:
            raise IcbhiError(path, f"recording {name} is listed twice (first on line {seen[name]})", number)
        seen[name] = number
        entries.append(SplitEntry(name, split, number))
    if not entries:
        raise IcbhiError(path, "the split file lists no recordings")
    return entries


def validation_split(records: Sequence[CycleRecord], fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Split training cycles by patient: ``(train indices, validation indices)`` into ``records``,
    each in record order.

    ``round(fraction * patients)`` patients (at least one, and at least one left for training) go
    to validation with all their cycles. Patients are stratified by their most frequent class
    (ties to the lower label), so a stratum's share of the validation patients follows its share of
    all patients (largest remainders); within a stratum the patients are drawn with
    ``numpy.random.default_rng(seed)``. The split depends only on the records' patients and labels,
    ``fraction`` and ``seed``, not on the training seed, so every seed of a run sees the same one.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    per_patient: dict[int, Counter] = defaultdict(Counter)
    for record in records:
        per_patient[record.patient][record.label] += 1
    patients = sorted(per_patient)
    if len(patients) < 2:
        raise ValueError(f"a patient-disjoint validation split needs at least 2 training patients, got {len(patients)}")
    wanted = min(max(1, round(fraction * len(patients))), len(patients) - 1)
    strata: dict[int, list[int]] = defaultdict(list)
    for patient in patients:
        counts = per_patient[patient]
        strata[max(sorted(counts), key=lambda label: counts[label])].append(patient)
    keys = sorted(strata)
    quotas = [wanted * len(strata[k]) / len(patients) for k in keys]
    take = [int(q) for q in quotas]
    # hand the patients that flooring left over to the strata with the largest remainders
    for i in sorted(range(len(keys)), key=lambda i: (take[i] - quotas[i], i))[:wanted - sum(take)]:
        take[i] += 1
    rng = np.random.default_rng(seed)
    held_out = set()
    for key, count in zip(keys, take, strict=True):
        held_out.update(rng.permutation(strata[key])[:count].tolist())
    train = [i for i, record in enumerate(records) if record.patient not in held_out]
    val = [i for i, record in enumerate(records) if record.patient in held_out]
    return train, val
