"""Teacher feature dump: run the teacher once over a data dir, store chosen layers in fp16.

Distillation with STaR or DistilHuBERT only needs the teacher's hidden states on clean audio, so
they can be computed once and read back at training time instead of running the teacher online
every epoch. :func:`dump_teacher_features` writes the dump, :class:`TeacherDump` reads it, and
:class:`DumpedSpeechDataset` pairs the audio of a data dir with its stored targets
(``data.dump_dir`` in the distillation config; see :mod:`audio_compress.tasks.datamodule`).

Why one utterance at a time
    Every utterance goes through the teacher **alone** (a batch of one, no padding). A padded
    batch would make the stored targets depend on which utterances happened to share the batch:
    HuBERT Base / wav2vec 2.0 Base normalise the first CNN block with a GroupNorm over the time
    axis, and that statistic is taken over the *padded* length, zeros included, so the features
    of a short utterance change with the length of its longest batch mate. Batch-of-one targets
    are exactly what the teacher computes for the utterance, and are reproducible.

Layout of ``out_dir``
    * ``dump_meta.json``: what is being dumped (layers, teacher, data dir, shard plan); written
      first, so an interrupted dump can be resumed and checked against the request.
    * ``shard_XXXXX.bin``: raw little-endian fp16, C order, shape ``(frames_in_shard, n_layers, D)``
      (the frames of one utterance are contiguous: reading one utterance is one slice). Written
      incrementally, one utterance after the other.
    * ``shard_XXXXX.json``: the shard's index (``utt_id -> [offset_frames, num_frames]``), written
      atomically only once the shard's ``.bin`` is complete and synced to disk; a shard counts as
      done only when its index exists, matches the plan and the ``.bin`` has the expected size.
    * ``index.json``: the whole dump (layers, hidden size, dtype, teacher, data dir, counts,
      shards, ``utt_id -> [shard, offset, frames]``), written atomically at the end, followed by
      the ``done`` marker.

Utterances are processed in sorted-id order and packed into shards in that order until a shard
holds ``shard_frames`` frames, so the shard assignment is deterministic and a re-run skips the
completed shards and redoes only the incomplete ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from audio_compress.data.dataset import SpeechDataset, WaveBatch, pad_waveforms
from audio_compress.frames import num_frames

__all__ = [
    "DumpError",
    "DumpBatch",
    "DumpedSpeechDataset",
    "TeacherDump",
    "dump_teacher_features",
    "expected_feature_bytes",
    "plan_shards",
    "teacher_identity",
]

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


class DumpError(RuntimeError):
    """A dump that cannot be written or read (mismatch, missing utterance, incomplete dump)."""


# ---------------------------------------------------------------------------------- helpers
def _atomic_write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _read_json(path: Path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _shard_name(index: int) -> str:
    return f"shard_{index:05d}"


def _gib(num_bytes: float) -> float:
    return num_bytes / 1024**3


def teacher_identity(teacher: torch.nn.Module) -> dict:
    """Description of a teacher used to tell dumps apart: class, source/name when the teacher
    exposes one, depth, width and a SHA-256 over its state dict (so a dump made with other
    weights is never mistaken for this one)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(teacher.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(name.encode())
        digest.update(str(t.dtype).encode())
        digest.update(t.view(torch.uint8).numpy().tobytes())
    source = None
    for attr in ("source", "spec", "name"):
        value = getattr(teacher, attr, None)
        if isinstance(value, (str, os.PathLike)):
            source = str(value)
            break
    return {
        "class": type(teacher).__name__,
        "source": source,
        "num_layers": int(teacher.num_layers),
        "hidden_size": int(teacher.hidden_size),
        "sha256": digest.hexdigest(),
    }


def _data_fingerprint(dataset: SpeechDataset) -> str:
    digest = hashlib.sha256()
    for utt, path, n in zip(dataset.utt_ids, dataset.paths, dataset.num_samples):
        digest.update(f"{utt}\t{path}\t{n}\n".encode())
    return digest.hexdigest()


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


def _index_overhead_bytes(utt_ids: Sequence[str], num_shards: int) -> int:
    """Generous estimate of the JSON index files (each utterance appears in its shard index and
    in ``index.json``, ~30 bytes of numbers and punctuation each)."""
    return sum(2 * (len(u.encode()) + 32) for u in utt_ids) + 1024 * (num_shards + 4)


def _free_space_dir(path: Path) -> Path:
    """``path`` or its nearest existing ancestor (where ``disk_usage`` can be asked)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


# ---------------------------------------------------------------------------------- writing
def _check_request(meta: dict, stored: dict, out_dir: Path, finished: bool) -> None:
    problems = []
    if stored.get("format_version") != FORMAT_VERSION:
        problems.append(f"format version {stored.get('format_version')} (this code writes {FORMAT_VERSION})")
    if stored.get("layers") != meta["layers"]:
        problems.append(f"teacher layers {stored.get('layers')} (requested {meta['layers']})")
    st, rt = stored.get("teacher") or {}, meta["teacher"]
    if (st.get("sha256"), st.get("num_layers"), st.get("hidden_size")) != (
        rt["sha256"], rt["num_layers"], rt["hidden_size"]
    ):
        problems.append(
            f"teacher {st.get('source') or st.get('class')} (sha256 {str(st.get('sha256'))[:12]}...; requested "
            f"{rt['source'] or rt['class']}, sha256 {rt['sha256'][:12]}...)"
        )
    if stored.get("data_fingerprint") != meta["data_fingerprint"]:
        problems.append(
            f"data dir {stored.get('data_dir')} with other utterances/paths/lengths "
            f"(requested {meta['data_dir']}, {meta['num_utterances']} utterances)"
        )
    if stored.get("resample") != meta["resample"]:
        problems.append(f"resample={stored.get('resample')} (requested resample={meta['resample']})")
    if problems:
        state = "finished" if finished else "unfinished"
        raise DumpError(
            f"{out_dir} already holds an {state} teacher dump that differs from this request: "
            + "; ".join(problems)
            + ". Use another output directory or delete this one to dump again."
        )


def _shard_is_complete(out_dir: Path, shard: int, plan_entry: dict, meta_key: str, bytes_per_frame: int) -> bool:
    name = _shard_name(shard)
    index_path, bin_path = out_dir / f"{name}.json", out_dir / f"{name}.bin"
    if not index_path.is_file() or not bin_path.is_file():
        return False
    try:
        index = _read_json(index_path)
    except (OSError, ValueError):
        return False
    if index.get("meta_key") != meta_key or index.get("utts") != plan_entry["utts"]:
        return False
    if index.get("num_frames") != plan_entry["num_frames"]:
        return False
    return bin_path.stat().st_size == plan_entry["num_frames"] * bytes_per_frame


class _Items(Dataset):
    """SpeechDataset items in the dump's order (used to prefetch audio with DataLoader workers)."""

    def __init__(self, dataset: SpeechDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return index, self.dataset[index]["wav"]


@torch.inference_mode()
def dump_teacher_features(
    teacher,
    data_dir: str | Path,
    out_dir: str | Path,
    layers: Sequence[int],
    shard_frames: int = DEFAULT_SHARD_FRAMES,
    device: str | torch.device = "cpu",
    resample: bool = False,
    progress: bool = True,
    num_workers: int = 0,
) -> Path:
    """Run ``teacher`` once over the Kaldi data dir ``data_dir`` and store hidden-state ``layers``
    (indices into ``hidden_states``; 0 = input of the first Transformer layer) in fp16 under
    ``out_dir``. Returns ``out_dir``.

    Each utterance is run alone (no padding; see the module docstring). Before starting, the
    expected size is printed and the dump is refused when the free space of ``out_dir``'s file
    system cannot hold the remaining part plus 5 %. An interrupted dump resumes: completed shards
    are verified and skipped, incomplete ones redone. A finished dump with the same layers,
    teacher and data is left as is (a no-op); a different request for the same ``out_dir`` is an
    error.

    Args:
        teacher: a :class:`~audio_compress.teachers.FrozenTeacher` (or a spec string for
            :func:`~audio_compress.teachers.load_teacher`).
        shard_frames: frames per shard file (a shard is closed once it reaches this many).
        device: where the teacher runs.
        resample: resample non-16 kHz audio (else such files are refused).
        progress: show a tqdm bar over utterances.
        num_workers: DataLoader workers that read audio ahead of the teacher.

    Raises:
        DumpError: not enough disk space, a mismatching existing dump, a frame-count mismatch
            (naming the utterance) or values outside the fp16 range.
    """
    if isinstance(teacher, (str, os.PathLike)):
        from audio_compress.teachers import load_teacher

        teacher = load_teacher(str(teacher))
    out_dir = Path(out_dir)
    data_dir = Path(data_dir)
    num_teacher_layers, hidden = int(teacher.num_layers), int(teacher.hidden_size)
    layers = sorted({int(layer) for layer in layers})
    if not layers:
        raise ValueError("no teacher layers to dump")
    bad = [layer for layer in layers if not 0 <= layer <= num_teacher_layers]
    if bad:
        raise ValueError(
            f"teacher layers {bad} out of range: the teacher has hidden states 0..{num_teacher_layers}"
        )
    n_layers = len(layers)
    bytes_per_frame = n_layers * hidden * BYTES_PER_VALUE

    dataset = SpeechDataset(data_dir, resample=resample)
    frames = [num_frames(n) for n in dataset.num_samples]
    too_short = [u for u, f in zip(dataset.utt_ids, frames) if f == 0]
    if too_short:
        raise DumpError(
            f"{data_dir}: {len(too_short)} utterances are shorter than the CNN receptive field (0 frames), "
            f"first: {too_short[:5]}; remove them from the data dir"
        )
    shards = plan_shards(frames, shard_frames)
    plan = []
    for members in shards:
        utts, offset = {}, 0
        for i in members:
            utts[dataset.utt_ids[i]] = [offset, frames[i]]
            offset += frames[i]
        plan.append({"utts": utts, "num_frames": offset})

    meta = {
        "format_version": FORMAT_VERSION,
        "layers": layers,
        "hidden_size": hidden,
        "dtype": DTYPE,
        "layout": "(frames, layers, hidden) C order, little endian",
        "teacher": teacher_identity(teacher),
        "data_dir": str(data_dir.resolve()),
        "data_fingerprint": _data_fingerprint(dataset),
        "resample": bool(resample),
        "num_utterances": len(dataset),
        "num_frames": int(sum(frames)),
        "shard_frames": int(shard_frames),
    }
    # identifies the shard contents; the data dir's location is left out (moving a data dir whose
    # wav.scp holds absolute paths changes nothing that is stored)
    meta_key = hashlib.sha256(
        json.dumps({k: v for k, v in meta.items() if k != "data_dir"}, sort_keys=True).encode()
    ).hexdigest()

    # ---- an existing dump in out_dir: finished (no-op), resumable, or a mismatch
    if (out_dir / DONE_FILE).is_file() and (out_dir / INDEX_FILE).is_file():
        stored = _read_json(out_dir / INDEX_FILE)
        _check_request(meta, stored, out_dir, finished=True)
        print(f"Teacher dump {out_dir} is already complete ({stored['num_utterances']} utterances, "
              f"layers {stored['layers']}); nothing to do.")
        return out_dir
    if (out_dir / META_FILE).is_file():
        stored = _read_json(out_dir / META_FILE)
        _check_request(meta, stored, out_dir, finished=False)
        if stored.get("shard_frames") != meta["shard_frames"]:
            raise DumpError(
                f"{out_dir} holds an unfinished dump made with shard_frames={stored.get('shard_frames')}; "
                f"resume it with the same value (requested {shard_frames}) or delete the directory"
            )

    # ---- size and free space
    feature_bytes = sum(frames) * bytes_per_frame
    overhead = _index_overhead_bytes(dataset.utt_ids, len(plan))
    complete = [
        (out_dir / META_FILE).is_file() and _shard_is_complete(out_dir, s, plan[s], meta_key, bytes_per_frame)
        for s in range(len(plan))
    ]
    remaining = sum(p["num_frames"] * bytes_per_frame for p, done in zip(plan, complete) if not done) + overhead
    print(
        f"Teacher dump: {len(dataset)} utterances, {sum(frames)} frames, layers {layers}, hidden size {hidden}, "
        f"{len(plan)} shards -> {out_dir}\n"
        f"Expected size: {feature_bytes} bytes ({_gib(feature_bytes):.3f} GiB) of fp16 features "
        f"+ ~{overhead} bytes of index = {feature_bytes + overhead} bytes ({_gib(feature_bytes + overhead):.3f} GiB)"
        + (f"; {sum(complete)} shards already done, {remaining} bytes ({_gib(remaining):.3f} GiB) to write"
           if any(complete) else "")
    )
    usage_dir = _free_space_dir(out_dir)
    free = shutil.disk_usage(usage_dir).free
    needed = int(remaining * (1 + DISK_MARGIN))
    if needed > free:
        raise DumpError(
            f"not enough disk space for the teacher dump in {out_dir}: needs {needed} bytes "
            f"({_gib(needed):.3f} GiB, including a {DISK_MARGIN:.0%} margin) but only {free} bytes "
            f"({_gib(free):.3f} GiB) are free on the file system of {usage_dir}; free some space, "
            "choose another --out, or dump fewer layers"
        )

    out_dir.mkdir(parents=True, exist_ok=True)
    if not (out_dir / META_FILE).is_file():
        _atomic_write_json(out_dir / META_FILE, meta)

    # ---- run the teacher
    todo = [s for s in range(len(plan)) if not complete[s]]
    order = [i for s in todo for i in shards[s]]
    if hasattr(teacher, "eval"):
        teacher.eval()
    if hasattr(teacher, "to"):
        teacher = teacher.to(device)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(dataset), initial=len(dataset) - len(order), unit="utt", desc="teacher dump")
    loader = DataLoader(Subset(_Items(dataset), order), batch_size=None, shuffle=False, num_workers=num_workers)
    items = iter(loader)
    try:
        for s in todo:
            name = _shard_name(s)
            with open(out_dir / f"{name}.bin", "wb") as f:
                for i in shards[s]:
                    index, wav = next(items)
                    assert index == i
                    utt = dataset.utt_ids[i]
                    expected = frames[i]
                    if num_frames(wav.shape[0]) != expected:
                        raise DumpError(
                            f"utterance {utt}: the audio has {wav.shape[0]} samples ({num_frames(wav.shape[0])} frames) "
                            f"but utt2num_samples says {dataset.num_samples[i]} ({expected} frames); "
                            "re-run data preparation for this data dir"
                        )
                    out = teacher(wav.unsqueeze(0).to(device))
                    states = out.hidden_states
                    got = [tuple(states[layer].shape) for layer in layers]
                    if any(shape != (1, expected, hidden) for shape in got):
                        raise DumpError(
                            f"utterance {utt}: the teacher returned hidden states of shape {got[0]} for "
                            f"{wav.shape[0]} samples, expected (1, {expected}, {hidden}) = "
                            f"(1, num_frames(len), hidden); the teacher's CNN does not follow the "
                            "floor((L - 400) / 320) + 1 frame rule"
                        )
                    block = torch.stack([states[layer][0] for layer in layers], dim=1).to(torch.float16)
                    array = block.cpu().numpy()
                    if not np.isfinite(array).all():
                        raise DumpError(
                            f"utterance {utt}: teacher hidden states are not finite in fp16 "
                            "(NaN, or values beyond +-65504); check the teacher and the audio"
                        )
                    f.write(np.ascontiguousarray(array, dtype="<f2").tobytes())
                    if bar is not None:
                        bar.update(1)
                f.flush()
                os.fsync(f.fileno())
            _atomic_write_json(out_dir / f"{name}.json", {
                "shard": s, "file": f"{name}.bin", "meta_key": meta_key,
                "num_frames": plan[s]["num_frames"], "utts": plan[s]["utts"],
            })
    finally:
        if bar is not None:
            bar.close()

    # ---- final index
    utt_map = {}
    for s, entry in enumerate(plan):
        for utt, (offset, n) in entry["utts"].items():
            utt_map[utt] = [s, offset, n]
    index = dict(meta)
    index["meta_key"] = meta_key
    index["shards"] = [
        {"file": f"{_shard_name(s)}.bin", "index": f"{_shard_name(s)}.json", "num_frames": entry["num_frames"],
         "num_utterances": len(entry["utts"])}
        for s, entry in enumerate(plan)
    ]
    index["utts"] = utt_map
    _atomic_write_json(out_dir / INDEX_FILE, index)
    (out_dir / DONE_FILE).write_text(f"{len(dataset)} utterances, {sum(frames)} frames\n")
    print(f"Teacher dump complete: {out_dir}")
    return out_dir


# ---------------------------------------------------------------------------------- reading
class TeacherDump:
    """Read-only access to a finished dump.

    Memory maps are opened lazily, per process (the process id is checked on every access and
    maps are dropped when pickling), so one instance can be shared with forked or spawned
    DataLoader workers.
    """

    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir)
        if not (self.out_dir / DONE_FILE).is_file() or not (self.out_dir / INDEX_FILE).is_file():
            what = "does not exist" if not self.out_dir.is_dir() else "is incomplete (no 'done' marker)"
            raise DumpError(
                f"teacher dump {self.out_dir} {what}; run (or re-run, to resume) the dump stage "
                "(python -m audio_compress.bin.dump_teacher) with the same arguments"
            )
        index = _read_json(self.out_dir / INDEX_FILE)
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
            mm = np.memmap(self.out_dir / self._shards[shard], dtype="<f2", mode="r",
                           shape=(self._shard_frames[shard], len(self.layers), self.hidden_size))
            self._maps[shard] = mm
        return mm

    def get(self, utt_id: str, as_tensor: bool = False):
        """Stored targets of ``utt_id`` as ``(n_layers, T, D)`` fp16 (a copy, not a view of the
        map); a torch tensor when ``as_tensor``."""
        shard, offset, frames = self._lookup(utt_id)
        block = self._map(shard)[offset : offset + frames]
        # always a fresh, writable copy (a 1-frame slice is already contiguous: ascontiguousarray
        # would return a read-only view that keeps the map alive)
        array = np.array(block.transpose(1, 0, 2), dtype=np.float16, order="C", copy=True)
        return torch.from_numpy(array) if as_tensor else array

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_maps"] = {}
        return state


@dataclass
class DumpBatch(WaveBatch):
    """A :class:`~audio_compress.data.dataset.WaveBatch` plus stored teacher targets.

    Attributes:
        targets: one ``(B, T, D)`` float32 tensor per stored layer, zero at padded frames
            (``T = num_frames(L)`` of the padded waveform length ``L``).
        layers: teacher hidden-state index of each entry of ``targets``.
    """

    targets: list[torch.Tensor]
    layers: list[int]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "DumpBatch":
        return DumpBatch(
            self.wavs.to(device, non_blocking=non_blocking),
            self.padding_mask.to(device, non_blocking=non_blocking),
            self.lengths.to(device, non_blocking=non_blocking),
            self.utt_ids,
            [t.to(device, non_blocking=non_blocking) for t in self.targets],
            list(self.layers),
        )


class DumpedSpeechDataset(Dataset):
    """Whole utterances of a data dir (no cropping: the teacher saw whole utterances) with the
    teacher targets read from a dump. Items are dicts with ``utt_id``, ``wav`` and ``targets``
    (``(n_layers, T, D)`` fp16); :meth:`collate` builds a :class:`DumpBatch`."""

    def __init__(self, data_dir: str | Path, dump_dir: str | Path, resample: bool = False):
        self.speech = SpeechDataset(data_dir, crop_samples=None, resample=resample)
        self.dump = TeacherDump(dump_dir)
        missing = [u for u in self.speech.utt_ids if u not in self.dump]
        if missing:
            raise DumpError(
                f"{len(missing)} utterances of {data_dir} are missing from the teacher dump {dump_dir} "
                f"(first: {missing[:5]}); the dump was made for another data dir: re-run the dump stage"
            )
        bad = [u for u, n in zip(self.speech.utt_ids, self.speech.num_samples)
               if self.dump.num_frames(u) != num_frames(n)]
        if bad:
            raise DumpError(
                f"{len(bad)} utterances of {data_dir} have another length than in the teacher dump {dump_dir} "
                f"(first: {bad[:5]}); the data changed since the dump: re-run the dump stage"
            )
        self.layers = list(self.dump.layers)

    def __len__(self) -> int:
        return len(self.speech)

    @property
    def utt_ids(self) -> list[str]:
        return self.speech.utt_ids

    @property
    def lengths(self) -> list[int]:
        """Length in samples of every utterance (for bucketing)."""
        return self.speech.lengths

    def __getitem__(self, index: int) -> dict:
        item = self.speech[index]
        targets = self.dump.get(item["utt_id"], as_tensor=True)
        if targets.shape[1] != num_frames(item["wav"].shape[0]):
            raise DumpError(
                f"utterance {item['utt_id']}: {item['wav'].shape[0]} samples give "
                f"{num_frames(item['wav'].shape[0])} frames but the dump stores {targets.shape[1]}; "
                "re-run the dump stage"
            )
        item["targets"] = targets
        return item

    def collate(self, items: list[dict]) -> DumpBatch:
        """Pad waveforms (with :func:`~audio_compress.data.dataset.pad_waveforms`) and targets
        (zeros after each utterance's frames) into a :class:`DumpBatch`."""
        wavs, padding_mask, lengths = pad_waveforms([item["wav"] for item in items])
        total = num_frames(wavs.shape[1])
        targets = [torch.zeros(len(items), total, self.dump.hidden_size) for _ in self.layers]
        for b, item in enumerate(items):
            t = item["targets"]
            for j, target in enumerate(targets):
                target[b, : t.shape[1]] = t[j]
        return DumpBatch(wavs, padding_mask, lengths, [item["utt_id"] for item in items], targets, list(self.layers))
