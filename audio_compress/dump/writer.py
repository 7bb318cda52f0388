"""Writing a teacher dump: plan the shards, check an existing dump and the free space, run the
teacher one utterance at a time, write each shard and finally the index, then move the finished
dump into place.

The dump is written in the sibling folder ``<out_dir>.partial`` (:func:`~.layout.staging_dir`),
where an interrupted run leaves its completed shards for the next run to resume from. Only once
the index and the ``done`` marker are written there is the folder moved onto ``out_dir``
(replacing a previous dump only then), so ``out_dir`` never holds a partial dump.

See :mod:`audio_compress.dump` for the on-disk layout and why utterances run alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from audio_compress.data.dataset import SpeechDataset
from audio_compress.dump.layout import (
    BYTES_PER_VALUE,
    DEFAULT_SHARD_FRAMES,
    DISK_MARGIN,
    DONE_FILE,
    DTYPE,
    FORMAT_VERSION,
    INDEX_FILE,
    META_FILE,
    DumpError,
    plan_shards,
    shard_name,
    staging_dir,
)
from audio_compress.frames import num_frames
from compact_ssl.io import atomic_write_text, read_json, replace_folder

__all__ = ["dump_teacher_features", "teacher_identity"]


def _write_compact_json(path: Path, obj: Any) -> None:
    """Dump JSON files carry no whitespace (``index.json`` lists every utterance)."""
    atomic_write_text(path, json.dumps(obj, separators=(",", ":")))


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


# ------------------------------------------------------------------------------------ plan
@dataclass
class _DumpPlan:
    """Everything decided before the teacher runs."""

    #: where the finished dump goes
    out_dir: Path
    dataset: SpeechDataset
    layers: list[int]
    hidden: int
    #: frames of every utterance, in dataset order
    frames: list[int]
    #: dataset indices of every shard
    shards: list[list[int]]
    #: per shard: ``{"utts": {utt_id: [offset, frames]}, "num_frames": n}``
    entries: list[dict]
    meta: dict
    #: hash of ``meta`` without the data dir's location; stored in every shard index
    meta_key: str

    @property
    def work_dir(self) -> Path:
        """Where the dump is written (and resumed) until it is complete."""
        return staging_dir(self.out_dir)

    @property
    def bytes_per_frame(self) -> int:
        return len(self.layers) * self.hidden * BYTES_PER_VALUE


def _checked_layers(layers: Sequence[int], num_teacher_layers: int) -> list[int]:
    layers = sorted({int(layer) for layer in layers})
    if not layers:
        raise ValueError("no teacher layers to dump")
    bad = [layer for layer in layers if not 0 <= layer <= num_teacher_layers]
    if bad:
        raise ValueError(
            f"teacher layers {bad} out of range: the teacher has hidden states 0..{num_teacher_layers}"
        )
    return layers


def _utterance_frames(dataset: SpeechDataset, data_dir: Path) -> list[int]:
    frames = [num_frames(n) for n in dataset.num_samples]
    too_short = [u for u, f in zip(dataset.utt_ids, frames) if f == 0]
    if too_short:
        raise DumpError(
            f"{data_dir}: {len(too_short)} utterances are shorter than the CNN receptive field (0 frames), "
            f"first: {too_short[:5]}; remove them from the data dir"
        )
    return frames


def _shard_entries(utt_ids: Sequence[str], frames: Sequence[int], shards: Sequence[Sequence[int]]) -> list[dict]:
    entries = []
    for members in shards:
        utts, offset = {}, 0
        for i in members:
            utts[utt_ids[i]] = [offset, frames[i]]
            offset += frames[i]
        entries.append({"utts": utts, "num_frames": offset})
    return entries


def _plan_dump(teacher, data_dir: Path, out_dir: Path, layers: Sequence[int], shard_frames: int,
               resample: bool) -> _DumpPlan:
    hidden = int(teacher.hidden_size)
    layers = _checked_layers(layers, int(teacher.num_layers))
    dataset = SpeechDataset(data_dir, resample=resample)
    frames = _utterance_frames(dataset, data_dir)
    shards = plan_shards(frames, shard_frames)
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
    return _DumpPlan(out_dir, dataset, layers, hidden, frames, shards,
                     _shard_entries(dataset.utt_ids, frames, shards), meta, meta_key)


# ------------------------------------------------------------------------- existing dumps
def _request_differences(meta: dict, stored: dict) -> list[str]:
    """How the stored dump description ``stored`` differs from the request ``meta`` (empty: same)."""
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
    return problems


def _finished_dump(plan: _DumpPlan) -> dict | None:
    """The stored index when ``out_dir`` already holds this very dump, finished; else ``None``.

    A finished dump of another request is kept (and reported) until this one is complete."""
    out_dir = plan.out_dir
    if not ((out_dir / DONE_FILE).is_file() and (out_dir / INDEX_FILE).is_file()):
        return None
    stored = read_json(out_dir / INDEX_FILE)
    problems = _request_differences(plan.meta, stored)
    if not problems:
        return stored
    print(f"{out_dir} holds a finished teacher dump of another request ({'; '.join(problems)}); it stays "
          f"in place until the new dump is complete in {plan.work_dir}, and is replaced then")
    return None


def _adopt_in_place_partial(plan: _DumpPlan) -> None:
    """Move an unfinished dump written directly in ``out_dir`` (before dumps were staged) to the
    staging folder, so that its completed shards are resumed instead of redone."""
    out_dir, work = plan.out_dir, plan.work_dir
    if (out_dir / META_FILE).is_file() and not (out_dir / DONE_FILE).is_file() and not work.exists():
        os.replace(out_dir, work)
        print(f"Moved the unfinished teacher dump {out_dir} to {work} to resume it there")


def _check_unfinished(plan: _DumpPlan) -> None:
    """Refuse to resume an unfinished dump in the staging folder that was made for another request."""
    work = plan.work_dir
    if not (work / META_FILE).is_file():
        return
    stored = read_json(work / META_FILE)
    problems = _request_differences(plan.meta, stored)
    if stored.get("shard_frames") != plan.meta["shard_frames"]:
        problems.append(f"shard_frames={stored.get('shard_frames')} (requested {plan.meta['shard_frames']})")
    if problems:
        raise DumpError(
            f"{work} holds an unfinished teacher dump (for {plan.out_dir}) that differs from this request: "
            + "; ".join(problems)
            + f". Rerun with that dump's arguments to finish it, or delete {work} to start this one."
        )


def _shard_is_complete(out_dir: Path, shard: int, plan_entry: dict, meta_key: str, bytes_per_frame: int) -> bool:
    name = shard_name(shard)
    index_path, bin_path = out_dir / f"{name}.json", out_dir / f"{name}.bin"
    if not index_path.is_file() or not bin_path.is_file():
        return False
    try:
        index = read_json(index_path)
    except (OSError, ValueError):
        return False
    if index.get("meta_key") != meta_key or index.get("utts") != plan_entry["utts"]:
        return False
    if index.get("num_frames") != plan_entry["num_frames"]:
        return False
    return bin_path.stat().st_size == plan_entry["num_frames"] * bytes_per_frame


def _completed_shards(plan: _DumpPlan) -> list[bool]:
    """Per shard, whether a previous (interrupted) run left it complete and valid."""
    return [
        (plan.work_dir / META_FILE).is_file()
        and _shard_is_complete(plan.work_dir, s, entry, plan.meta_key, plan.bytes_per_frame)
        for s, entry in enumerate(plan.entries)
    ]


def _check_disk_space(plan: _DumpPlan, complete: Sequence[bool]) -> None:
    """Print the expected size; refuse when the file system cannot hold what is left + 5 %."""
    out_dir, bytes_per_frame = plan.out_dir, plan.bytes_per_frame
    feature_bytes = sum(plan.frames) * bytes_per_frame
    overhead = _index_overhead_bytes(plan.dataset.utt_ids, len(plan.entries))
    todo_frames = sum(e["num_frames"] for e, done in zip(plan.entries, complete) if not done)
    remaining = todo_frames * bytes_per_frame + overhead
    print(
        f"Teacher dump: {len(plan.dataset)} utterances, {sum(plan.frames)} frames, layers {plan.layers}, "
        f"hidden size {plan.hidden}, {len(plan.entries)} shards -> {out_dir}\n"
        f"Expected size: {feature_bytes} bytes ({_gib(feature_bytes):.3f} GiB) of fp16 features "
        f"+ ~{overhead} bytes of index = {feature_bytes + overhead} bytes "
        f"({_gib(feature_bytes + overhead):.3f} GiB)"
        + (f"; {sum(complete)} shards already done, {remaining} bytes ({_gib(remaining):.3f} GiB) to write"
           if any(complete) else "")
    )
    usage_dir = _free_space_dir(plan.work_dir)
    free = shutil.disk_usage(usage_dir).free
    needed = int(remaining * (1 + DISK_MARGIN))
    if needed > free:
        raise DumpError(
            f"not enough disk space for the teacher dump in {out_dir}: needs {needed} bytes "
            f"({_gib(needed):.3f} GiB, including a {DISK_MARGIN:.0%} margin) but only {free} bytes "
            f"({_gib(free):.3f} GiB) are free on the file system of {usage_dir}; free some space, "
            "choose another --out, or dump fewer layers"
        )


# ----------------------------------------------------------------------------- teacher run
class _Items(Dataset):
    """SpeechDataset items in the dump's order (used to prefetch audio with DataLoader workers)."""

    def __init__(self, dataset: SpeechDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return index, self.dataset[index]["wav"]


def _utterance_bytes(teacher, plan: _DumpPlan, i: int, wav: torch.Tensor, device) -> bytes:
    """The stored layers of utterance ``i`` as ``(frames, n_layers, D)`` little-endian fp16."""
    utt, expected, hidden = plan.dataset.utt_ids[i], plan.frames[i], plan.hidden
    if num_frames(wav.shape[0]) != expected:
        raise DumpError(
            f"utterance {utt}: the audio has {wav.shape[0]} samples ({num_frames(wav.shape[0])} frames) "
            f"but utt2num_samples says {plan.dataset.num_samples[i]} ({expected} frames); "
            "re-run data preparation for this data dir"
        )
    states = teacher(wav.unsqueeze(0).to(device)).hidden_states
    got = [tuple(states[layer].shape) for layer in plan.layers]
    if any(shape != (1, expected, hidden) for shape in got):
        raise DumpError(
            f"utterance {utt}: the teacher returned hidden states of shape {got[0]} for "
            f"{wav.shape[0]} samples, expected (1, {expected}, {hidden}) = "
            f"(1, num_frames(len), hidden); the teacher's CNN does not follow the "
            "floor((L - 400) / 320) + 1 frame rule"
        )
    block = torch.stack([states[layer][0] for layer in plan.layers], dim=1).to(torch.float16)
    array = block.cpu().numpy()
    if not np.isfinite(array).all():
        raise DumpError(
            f"utterance {utt}: teacher hidden states are not finite in fp16 "
            "(NaN, or values beyond +-65504); check the teacher and the audio"
        )
    return np.ascontiguousarray(array, dtype="<f2").tobytes()


def _write_shard(teacher, plan: _DumpPlan, shard: int, items: Iterator, device, bar) -> None:
    """Write the shard's ``.bin`` and sync it to disk, then its index: the index is what marks
    the shard complete, so an interruption before it leaves the shard to be redone."""
    name = shard_name(shard)
    with open(plan.work_dir / f"{name}.bin", "wb") as f:
        for i in plan.shards[shard]:
            index, wav = next(items)
            assert index == i
            f.write(_utterance_bytes(teacher, plan, i, wav, device))
            if bar is not None:
                bar.update(1)
        f.flush()
        os.fsync(f.fileno())
    entry = plan.entries[shard]
    _write_compact_json(plan.work_dir / f"{name}.json", {
        "shard": shard, "file": f"{name}.bin", "meta_key": plan.meta_key,
        "num_frames": entry["num_frames"], "utts": entry["utts"],
    })


def _run_teacher(teacher, plan: _DumpPlan, todo: Sequence[int], device, progress: bool,
                 num_workers: int) -> None:
    order = [i for s in todo for i in plan.shards[s]]
    if hasattr(teacher, "eval"):
        teacher.eval()
    if hasattr(teacher, "to"):
        teacher = teacher.to(device)
    total = len(plan.dataset)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=total - len(order), unit="utt", desc="teacher dump")
    loader = DataLoader(Subset(_Items(plan.dataset), order), batch_size=None, shuffle=False,
                        num_workers=num_workers)
    items = iter(loader)
    try:
        for s in todo:
            _write_shard(teacher, plan, s, items, device, bar)
    finally:
        if bar is not None:
            bar.close()


def _write_index(plan: _DumpPlan) -> None:
    """``index.json`` (the meta plus every shard and utterance), then the ``done`` marker: the
    explicit "complete" state that :class:`~audio_compress.dump.TeacherDump` requires."""
    utt_map = {}
    for s, entry in enumerate(plan.entries):
        for utt, (offset, n) in entry["utts"].items():
            utt_map[utt] = [s, offset, n]
    index = dict(plan.meta)
    index["meta_key"] = plan.meta_key
    index["shards"] = [
        {"file": f"{shard_name(s)}.bin", "index": f"{shard_name(s)}.json", "num_frames": entry["num_frames"],
         "num_utterances": len(entry["utts"])}
        for s, entry in enumerate(plan.entries)
    ]
    index["utts"] = utt_map
    _write_compact_json(plan.work_dir / INDEX_FILE, index)
    _write_compact_json(plan.work_dir / DONE_FILE, {"num_utterances": len(plan.dataset),
                                                    "num_frames": int(sum(plan.frames)), "meta_key": plan.meta_key})


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
    system cannot hold the remaining part plus 5 %. The dump is written in ``<out_dir>.partial``
    and moved onto ``out_dir`` once complete: ``out_dir`` never holds a partial dump, and a
    previous dump there is replaced only then. An interrupted dump resumes: completed shards in
    ``<out_dir>.partial`` are verified and skipped, incomplete ones redone (an unfinished dump of
    another request there is an error). A finished dump with the same layers, teacher and data is
    left as is (a no-op).

    Args:
        teacher: a :class:`~audio_compress.teachers.FrozenTeacher` (or a spec string for
            :func:`~audio_compress.teachers.load_teacher`).
        shard_frames: frames per shard file (a shard is closed once it reaches this many).
        device: where the teacher runs.
        resample: resample non-16 kHz audio (else such files are refused).
        progress: show a tqdm bar over utterances.
        num_workers: DataLoader workers that read audio ahead of the teacher.

    Raises:
        DumpError: not enough disk space, a mismatching unfinished dump, a frame-count mismatch
            (naming the utterance) or values outside the fp16 range.
    """
    from audio_compress.teachers import load_teacher

    if isinstance(teacher, (str, os.PathLike)):
        teacher = load_teacher(str(teacher))
    out_dir = Path(out_dir)
    plan = _plan_dump(teacher, Path(data_dir), out_dir, layers, shard_frames, resample)
    stored = _finished_dump(plan)
    if stored is not None:
        print(f"Teacher dump {out_dir} is already complete ({stored['num_utterances']} utterances, "
              f"layers {stored['layers']}); nothing to do.")
        return out_dir
    _adopt_in_place_partial(plan)
    _check_unfinished(plan)
    complete = _completed_shards(plan)
    _check_disk_space(plan, complete)
    work = plan.work_dir
    work.mkdir(parents=True, exist_ok=True)
    if not (work / META_FILE).is_file():
        _write_compact_json(work / META_FILE, plan.meta)
    _run_teacher(teacher, plan, [s for s, done in enumerate(complete) if not done], device, progress,
                 num_workers)
    _write_index(plan)
    replace_folder(work, out_dir)
    print(f"Teacher dump complete: {out_dir}")
    return out_dir
