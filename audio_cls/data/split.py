"""The official ICBHI 60/40 split file: one ``<recording name> <train|test>`` per line.

The split is by recording, not strictly by patient (patients 156 and 218 appear in both sets).
The file as distributed has no final newline; blank lines, CRLF endings and tab-or-space
separation are accepted. Anything else is an error naming the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from audio_cls.data.icbhi import IcbhiError, RecordingName

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
