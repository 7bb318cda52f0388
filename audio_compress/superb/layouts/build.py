"""Building several mini layouts at once, from the mini corpus or from FSDD."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from audio_compress.superb.layouts.common import LayoutError, Utt
from audio_compress.superb.layouts.ic import build_ic_layout
from audio_compress.superb.layouts.ks import build_ks_layout
from audio_compress.superb.layouts.pr import build_pr_layout
from audio_compress.superb.layouts.sid import build_sid_layout
from audio_compress.superb.layouts.sources import fsdd_utterances, utterances_from_data_dirs

__all__ = ["BUILDERS", "build_fsdd_layouts", "build_layouts", "build_mini_layouts"]

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
