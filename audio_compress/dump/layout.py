"""What a dump looks like on disk: format constants, shard naming and packing, sizes.

Shared by the writer and the reader so that both agree on one definition of the layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from audio_compress.frames import num_frames

FORMAT_VERSION = 1
DTYPE = "float16"
BYTES_PER_VALUE = 2
#: Default shard size in frames (~2.2 GiB per shard for 13 layers x 768 dims, ~4.7 h of audio).
DEFAULT_SHARD_FRAMES = 110_000
#: Safety margin on top of the expected size in the free-space check.
DISK_MARGIN = 0.05
META_FILE = "dump_meta.json"
INDEX_FILE = "index.json"
DONE_FILE = "done"
#: suffix of the sibling folder a dump is written (and resumed) in before it is moved into place
STAGING_SUFFIX = ".partial"


class DumpError(RuntimeError):
    """A dump that cannot be written or read (mismatch, missing utterance, incomplete dump)."""


def staging_dir(out_dir: Path) -> Path:
    """Where the dump of ``out_dir`` is written until it is complete: ``<out_dir>.partial``."""
    return out_dir.with_name(out_dir.name + STAGING_SUFFIX)


def shard_name(index: int) -> str:
    """File stem of shard ``index`` (``shard_00003``); its files are ``.bin`` and ``.json``."""
    return f"shard_{index:05d}"


def plan_shards(frames: Sequence[int], shard_frames: int) -> list[list[int]]:
    """Pack item indices ``0..n-1`` in order into shards: a shard is closed as soon as it holds
    at least ``shard_frames`` frames (an utterance is never split)."""
    if shard_frames <= 0:
        raise ValueError(f"shard_frames must be positive, got {shard_frames}")
    shards: list[list[int]] = []
    current: list[int] = []
    total = 0
    for i, n in enumerate(frames):
        current.append(i)
        total += n
        if total >= shard_frames:
            shards.append(current)
            current, total = [], 0
    if current:
        shards.append(current)
    return shards


def expected_feature_bytes(num_samples: Sequence[int], n_layers: int, hidden_size: int) -> int:
    """Bytes of the fp16 feature files: ``sum(num_frames(L)) * n_layers * D * 2``."""
    return sum(num_frames(int(n)) for n in num_samples) * n_layers * hidden_size * BYTES_PER_VALUE
