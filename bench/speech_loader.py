"""Benchmark the speech data loader per worker, and how many loader workers one GPU needs.

Setup: ``--utterances`` generated speech-like files (16-bit FLAC, lengths uniform in
``--min_seconds`` .. ``--max_seconds``, as LibriSpeech's 2-17 s) in a temporary Kaldi data dir at
16 kHz and, with ``--resample_from HZ``, the same utterances at that rate in a second data dir.
The loader is the project's own: :class:`~audio_compress.data.dataset.SpeechDataset` (decode with
:func:`compact_ssl.audio.load_audio`, checks, resampling), the length-bucketing
:class:`~audio_compress.data.sampler.DurationBucketBatchSampler` at a recipe's batch budget
(default STaRHuBERT 960 h: 18 utterances, 10,080,000 padded samples) and
:func:`~audio_compress.data.dataset.collate_waveforms`. Files were just written, so they come
from the page cache: this measures the CPU cost of loading, not the disk.

Everything runs in this one process with one torch thread, i.e. what one DataLoader worker does.
Rates are in audio-seconds per core-second: audio seconds handled / CPU seconds of this process
(``time.process_time``, so a busy machine slows the wall clock but hardly the figure); the wall
clock rate is given beside it. Every figure is the median over ``--repeats`` passes.

Output, one JSON line per measurement on stdout (progress on stderr):

``loader_stage``
    ``stage`` = ``decode`` (``SpeechDataset`` items at 16 kHz), ``decode_native`` (the other-rate
    files decoded at their own rate), ``resample`` (``resample_audio`` of those to 16 kHz),
    ``bucket`` (building the sampler and drawing one epoch of batches), ``collate`` (padding the
    decoded items of every batch into ``WaveBatch``). ``ratio`` = audio-seconds per core-second.
``loader_pipeline``
    One epoch through ``DataLoader(dataset, batch_sampler=..., collate_fn=collate_waveforms)``
    with ``num_workers=0`` (all stages, as one worker runs them); ``resampled`` says whether the
    files were at ``--resample_from``. ``ratio`` = audio-seconds per core-second.
``workers_needed`` (per step speed, for each pipeline)
    ``ratio`` = ``ceil(step audio-seconds per second / pipeline audio-seconds per core-second)``:
    loader workers (one core each) that one GPU needs to never wait for data. The step speed is
    ``source: measured`` (the ``train_audio_throughput`` lines of a ``bench/distill_step.py`` run
    given with ``--step_json``) or ``source: flop_estimate``: the device's dense bf16 peak
    (``--device_name`` looked up in the table of ``bench/_common.py``) x the assumed MFU
    (``--mfu``, in the line as ``assumed_mfu``) / the FLOPs of one online distillation step per
    audio-second (counted with the flop counter on one ``--flop_seconds`` utterance).

Examples::

    OMP_NUM_THREADS=1 python bench/speech_loader.py --resample_from 44100       # FLOP estimate for an H100
    python bench/speech_loader.py --resample_from 44100 --step_json results.jsonl  # measured step speeds

This is a benchmark, not a test: it asserts nothing about the numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from _common import (
    Emitter,
    count_flops,
    logger,
    median,
    peak_tflops_for,
    time_regions,
    with_cpu_clock,
    write_speech_dir,
)
from torch.utils.data import DataLoader

from audio_compress.data.dataset import SpeechDataset, WaveBatch, collate_waveforms
from audio_compress.data.kaldi import read_kaldi_map
from audio_compress.data.sampler import DurationBucketBatchSampler
from audio_compress.frames import SAMPLE_RATE
from compact_ssl.audio import load_audio, resample_audio

BENCH = "speech_loader"
CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[1]
log = logger(BENCH)


# ---------------------------------------------------------------------- pure helpers


def workers_needed(step_audio_s_per_s: float, worker_audio_s_per_core_s: float) -> int:
    """Loader workers (one core each) that keep a step consuming ``step_audio_s_per_s`` fed."""
    if worker_audio_s_per_core_s <= 0:
        raise ValueError(f"worker rate must be positive, got {worker_audio_s_per_core_s}")
    return max(1, math.ceil(step_audio_s_per_s / worker_audio_s_per_core_s))


def flop_estimated_step_rate(step_flops_per_audio_s: float, peak_tflops: float, mfu: float) -> float:
    """Audio-seconds a device trains per second at ``mfu`` of ``peak_tflops``."""
    return peak_tflops * 1e12 * mfu / step_flops_per_audio_s


def measured_step_rates(path: Path) -> list[dict]:
    """``train_audio_throughput`` lines of a ``bench/distill_step.py`` JSON-lines file."""
    if not path.is_file():
        raise SystemExit(f"--step_json {path}: no such file; pass the JSON lines bench/distill_step.py printed")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise SystemExit(f"{path}:{number}: not a JSON line ({error})") from None
        if record.get("bench") == "distill_step" and record.get("what") == "train_audio_throughput":
            rows.append(record)
    if not rows:
        raise SystemExit(f"{path}: no distill_step train_audio_throughput line; run bench/distill_step.py into it")
    return rows


# ---------------------------------------------------------------------- timing


def per_core(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median (CPU seconds, wall seconds) of ``repeats`` calls of ``fn`` after one untimed call."""
    body, cpu = with_cpu_clock(lambda mark: (fn(), mark("run")), warmup=1)
    wall = time_regions(body, 1, repeats, CPU)
    return median(cpu()["run"]), median(wall["run"])


def generate(folder: Path, args) -> tuple[Path, Path | None, float]:
    """The 16 kHz data dir, the other-rate one (or None) and the audio seconds of one epoch."""
    rng = np.random.default_rng(args.seed)
    seconds = rng.uniform(args.min_seconds, args.max_seconds, args.utterances)
    data = write_speech_dir(folder / "16k", [int(s * SAMPLE_RATE) for s in seconds], seed=args.seed)
    other = None
    if args.resample_from:
        other = write_speech_dir(folder / f"{args.resample_from}", [int(s * args.resample_from) for s in seconds],
                                 sample_rate=args.resample_from, seed=args.seed)
    lengths = read_kaldi_map(data / "utt2num_samples")
    return data, other, sum(int(n) for n in lengths.values()) / SAMPLE_RATE


def bench_loader(args, emit, data: Path, other: Path | None, audio_s: float) -> dict[str, float]:
    """Emit the stage and pipeline lines; return the pipeline rates by variant."""
    def rate_line(what: str, cpu_wall: tuple[float, float], **fields) -> float:
        cpu, wall = cpu_wall
        rate = audio_s / cpu
        emit(what=what, **fields, ratio=round(rate, 1), unit="audio-seconds per core-second", seconds=round(cpu, 5),
             reference="audio seconds of the epoch", reference_seconds=round(audio_s, 2),
             wall_seconds=round(wall, 5), wall_audio_s_per_s=round(audio_s / wall, 1))
        return rate

    speech = SpeechDataset(data)
    log(f"{len(speech)} utterances, {audio_s:.0f} s of audio; timing the stages")
    rate_line("loader_stage", per_core(lambda: [speech[i] for i in range(len(speech))], args.repeats), stage="decode")
    items = [speech[i] for i in range(len(speech))]

    def sampler() -> DurationBucketBatchSampler:
        return DurationBucketBatchSampler(speech.lengths, args.max_batch_samples, args.max_batch_size, shuffle=True)

    rate_line("loader_stage", per_core(lambda: list(sampler()), args.repeats), stage="bucket",
              batches=len(sampler()))
    batches = list(sampler())

    def collate_all() -> list[WaveBatch]:
        return [collate_waveforms([items[i] for i in batch]) for batch in batches]

    rate_line("loader_stage", per_core(collate_all, args.repeats), stage="collate")
    if other is not None:
        scp = read_kaldi_map(other / "wav.scp")
        native = [load_audio(p, args.resample_from) for p in scp.values()]
        rate_line("loader_stage", per_core(lambda: [load_audio(p, args.resample_from) for p in scp.values()],
                                           args.repeats), stage="decode_native", sample_rate=args.resample_from)
        rate_line("loader_stage", per_core(lambda: [resample_audio(w, args.resample_from, SAMPLE_RATE) for w in native],
                                           args.repeats), stage="resample", sample_rate=args.resample_from)

    pipelines = {}
    for variant, folder in (("16000", data), (str(args.resample_from), other)):
        if folder is None:
            continue
        dataset = SpeechDataset(folder, resample=folder is other)
        loader = DataLoader(dataset, batch_sampler=sampler(), collate_fn=collate_waveforms, num_workers=0)
        log(f"timing one epoch of the loader ({variant} Hz files)")
        pipelines[variant] = rate_line("loader_pipeline", per_core(lambda loader=loader: list(loader), args.repeats),
                                       resampled=folder is other, sample_rate=int(variant), batches=len(loader))
    return pipelines


def flop_step_rates(args) -> list[dict]:
    """Per student: online distillation step FLOPs per audio-second and the estimated step speed."""
    from distill_step import default_method

    from audio_compress.tasks.config import load_config
    from audio_compress.tasks.distill import DistillationTask
    from audio_compress.teachers import load_teacher

    peak = peak_tflops_for(args.device_name)
    if peak is None:
        raise SystemExit(f"--device_name {args.device_name!r} is not in the peak table of bench/_common.py; "
                         "name a listed device (e.g. H100) or pass --step_json with measured speeds")
    teacher = load_teacher(args.teacher, seed=args.seed)
    n = int(args.flop_seconds * SAMPLE_RATE)
    batch = WaveBatch(0.1 * torch.randn(1, n), torch.zeros(1, n, dtype=torch.bool), torch.tensor([n]), ["utt"])
    rows = []
    for name in filter(None, (s.strip() for s in args.students.split(","))):
        student, _, method = name.partition(":")
        method = method or default_method(student)
        log(f"{student} ({method}): counting the FLOPs of one step on {args.flop_seconds:g} s")
        config = load_config(None, [f"method={method}", f"student={student}"])
        task = DistillationTask(config, teacher=teacher).train()
        flops = count_flops(lambda task=task: task.compute_loss(batch, train=True)["loss"].backward(), CPU)
        per_audio_s = flops / args.flop_seconds
        rows.append({"student": student, "method": method, "step_flops_per_audio_s": per_audio_s,
                     "step_audio_s_per_s": flop_estimated_step_rate(per_audio_s, peak, args.mfu),
                     "peak_tflops": peak, "assumed_mfu": args.mfu, "device_name": args.device_name,
                     "source": "flop_estimate"})
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances", type=int, default=40, help="generated utterances (default 40)")
    parser.add_argument("--min_seconds", type=float, default=2.0)
    parser.add_argument("--max_seconds", type=float, default=16.0)
    parser.add_argument("--resample_from", type=int, default=0,
                        help="also measure files at this rate resampled to 16 kHz (e.g. 44100; 0: not asked)")
    parser.add_argument("--max_batch_samples", type=int, default=10_080_000,
                        help="padded samples per batch (default: the STaRHuBERT 960 h recipe)")
    parser.add_argument("--max_batch_size", type=int, default=18, help="utterances per batch at most (default 18)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per measurement (default 3)")
    parser.add_argument("--step_json", type=Path, default=None,
                        help="JSON lines of bench/distill_step.py: use its measured step speeds")
    parser.add_argument("--device_name", default="NVIDIA H100 80GB HBM3",
                        help="device whose dense bf16 peak the FLOP estimate uses (default H100 SXM)")
    parser.add_argument("--mfu", type=float, default=0.3, help="assumed model FLOP utilisation (default 0.3)")
    parser.add_argument("--students", default="starhubert,armhubert,distilhubert",
                        help="students of the FLOP estimate (name or name:method)")
    parser.add_argument("--teacher", default="hubert_base", help="teacher of the FLOP estimate")
    parser.add_argument("--flop_seconds", type=float, default=10.0, help="utterance length of the FLOP count")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)  # one loader worker = one core
    emit = Emitter(BENCH, {"device": "cpu", "threads": 1, "utterances": args.utterances,
                           "max_batch_samples": args.max_batch_samples, "max_batch_size": args.max_batch_size,
                           "repeats": args.repeats, "page_cache": "warm"})
    with tempfile.TemporaryDirectory(prefix="speech_loader_") as tmp:
        log(f"writing {args.utterances} FLAC files" + (f" at 16 kHz and {args.resample_from} Hz" if args.resample_from
                                                       else " at 16 kHz"))
        data, other, audio_s = generate(Path(tmp), args)
        pipelines = bench_loader(args, emit, data, other, audio_s)
    if args.step_json is not None:
        steps = [{"student": r.get("student"), "method": r.get("method"), "compile": r.get("compile"),
                  "step_audio_s_per_s": r["ratio"], "device_name": r.get("device_name"), "source": "measured",
                  "step_json": str(args.step_json)} for r in measured_step_rates(args.step_json)]
    else:
        steps = flop_step_rates(args)
    for step in steps:
        for variant, rate in pipelines.items():
            emit(what="workers_needed", **{**step, "step_audio_s_per_s": round(step["step_audio_s_per_s"], 1)},
                 ratio=workers_needed(step["step_audio_s_per_s"], rate), unit="loader workers (cores) per GPU",
                 sample_rate=int(variant), resampled=variant != "16000", loader_audio_s_per_core_s=round(rate, 1))


if __name__ == "__main__":
    main()
