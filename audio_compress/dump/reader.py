"""Reading a finished teacher dump through per-process memory maps."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from audio_compress.dump.layout import (
    BYTES_PER_VALUE,
    DONE_FILE,
    DTYPE,
    FORMAT_VERSION,
    INDEX_FILE,
    DumpError,
    staging_dir,
)
from compact_ssl.io import read_json

__all__ = ["TeacherDump"]


class TeacherDump:
    """Read-only access to a finished dump.

    Memory maps are opened lazily, per process (the process id is checked on every access and
    maps are dropped when pickling), so one instance can be shared with forked or spawned
    DataLoader workers.
    """

    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir)
        if not (self.out_dir / DONE_FILE).is_file() or not (self.out_dir / INDEX_FILE).is_file():
            raise DumpError(f"teacher dump {self.out_dir} {self._missing_reason()}; rerun stage 3 of the recipe "
                            "(python -m audio_compress.bin.dump_teacher with the same arguments), which resumes "
                            "what an interrupted dump left")
        index = read_json(self.out_dir / INDEX_FILE)
        if index.get("format_version") != FORMAT_VERSION or index.get("dtype") != DTYPE:
            raise DumpError(f"{self.out_dir / INDEX_FILE}: unsupported dump format; re-run the dump stage")
        self.index = index
        self.layers: list[int] = list(index["layers"])
        self.hidden_size: int = int(index["hidden_size"])
        self.teacher: dict = index["teacher"]
        self._shards = [s["file"] for s in index["shards"]]
        self._shard_frames = [int(s["num_frames"]) for s in index["shards"]]
        self._utts: dict[str, list[int]] = index["utts"]
        frame_bytes = len(self.layers) * self.hidden_size * BYTES_PER_VALUE
        for file, n in zip(self._shards, self._shard_frames):
            path = self.out_dir / file
            size = path.stat().st_size if path.is_file() else None
            if size != n * frame_bytes:
                raise DumpError(
                    f"{path}: {'missing' if size is None else f'{size} bytes'}, expected {n * frame_bytes}; "
                    "the dump is damaged, delete it and re-run the dump stage"
                )
        self._maps: dict[int, np.memmap] = {}
        self._pid = os.getpid()

    def _missing_reason(self) -> str:
        """Why ``out_dir`` is not a finished dump (for the error message)."""
        staging = staging_dir(self.out_dir)
        if not self.out_dir.exists():
            if staging.is_dir():
                return f"does not exist yet: an unfinished dump is in {staging}"
            return "does not exist"
        return (f"is incomplete: it has no '{DONE_FILE}' marker or no {INDEX_FILE} (a dump gets both last, "
                "once every shard is written)")

    def __len__(self) -> int:
        return len(self._utts)

    def __contains__(self, utt_id: str) -> bool:
        return utt_id in self._utts

    @property
    def utt_ids(self) -> list[str]:
        return sorted(self._utts)

    def num_frames(self, utt_id: str) -> int:
        return int(self._lookup(utt_id)[2])

    def _lookup(self, utt_id: str) -> list[int]:
        try:
            return self._utts[utt_id]
        except KeyError:
            raise KeyError(
                f"utterance {utt_id!r} is not in the teacher dump {self.out_dir}; re-run the dump stage "
                "for this data dir"
            ) from None

    def _map(self, shard: int) -> np.memmap:
        if self._pid != os.getpid():  # forked worker: never reuse the parent's maps
            self._maps, self._pid = {}, os.getpid()
        mm = self._maps.get(shard)
        if mm is None:
            # copy-on-write ("c"): views handed out are writable (torch wants that) without any
            # write ever reaching the dump
            mm = np.memmap(self.out_dir / self._shards[shard], dtype="<f2", mode="c",
                           shape=(self._shard_frames[shard], len(self.layers), self.hidden_size))
            self._maps[shard] = mm
        return mm

    def _slice(self, utt_id: str, start: int, count: int | None) -> np.ndarray:
        """Frames ``start .. start + count - 1`` of ``utt_id`` as a ``(count, n_layers, D)`` view of the map."""
        shard, offset, frames = self._lookup(utt_id)
        count = frames - start if count is None else count
        if start < 0 or count < 0 or start + count > frames:
            raise ValueError(
                f"frames {start}..{start + count - 1} of utterance {utt_id!r} requested, but the teacher dump "
                f"{self.out_dir} stores {frames} frames for it"
            )
        return self._map(shard)[offset + start : offset + start + count]

    def view(self, utt_id: str, start: int = 0, count: int | None = None) -> torch.Tensor:
        """Stored targets of ``utt_id`` in the dump's own layout, ``(T, n_layers, D)`` fp16, as a
        tensor *viewing* the memory map: nothing is read until the values are used, so a batch
        can be filled straight from the page cache with one copy. The map is copy-on-write:
        writing to the view changes this process's pages only, never the dump. ``start`` /
        ``count`` select frames ``start .. start + count - 1`` of the utterance (default: all)."""
        return torch.from_numpy(self._slice(utt_id, start, count))

    def get(self, utt_id: str, as_tensor: bool = False, start: int = 0,
            count: int | None = None) -> np.ndarray | torch.Tensor:
        """Stored targets of ``utt_id`` as ``(n_layers, T, D)`` fp16, read into memory (a copy, not a
        view of the map); a torch tensor when ``as_tensor``; ``start`` / ``count`` as in :meth:`view`.

        The result is the transposed view of a fresh C-ordered copy of the stored
        ``(T, n_layers, D)`` block, so reading costs one memory copy and no transposition
        (``.transpose(0, 1)`` of it, ``(1, 0, 2)`` in numpy, is that block again)."""
        array = np.array(self._slice(utt_id, start, count), copy=True).transpose(1, 0, 2)
        return torch.from_numpy(array) if as_tensor else array

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_maps"] = {}
        return state
