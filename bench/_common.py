"""Timing, FLOP counting and JSON-line output shared by the ``bench/*.py`` scripts.

FLOPs are counted with :class:`torch.utils.flop_counter.FlopCounterMode` over one call of exactly
what is timed (forward and, where the timed code has one, backward). The counter knows matmuls,
convolutions and the CUDA attention kernels; the CPU fused attention kernels are added here.
Elementwise work (norms, activations, softmax, optimizer updates) is not counted, so achieved
FLOP/s are model FLOP/s, as in MFU.
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable

import torch

#: dense bf16 peak TFLOP/s by device-name fragment (matched case-insensitively, first hit wins)
DENSE_BF16_PEAK_TFLOPS = (
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("A10G", 70.0),
    ("L4", 121.0),
)


def peak_tflops_for(device_name: str) -> float | None:
    """Dense bf16 peak of a CUDA device from :data:`DENSE_BF16_PEAK_TFLOPS`, or None if unknown."""
    for fragment, peak in DENSE_BF16_PEAK_TFLOPS:
        if fragment.lower() in device_name.lower():
            return peak
    return None


def device_name(device: torch.device) -> str:
    """The CUDA device name, or the CPU's processor string."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")


def sync(device: torch.device) -> None:
    """Wait for queued device work (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_regions(body: Callable[[Callable[[str], None]], None], warmup: int, repeats: int,
                 device: torch.device) -> dict[str, list[float]]:
    """Run ``body(mark)`` ``warmup + repeats`` times; ``mark(name)`` ends a timed region.

    Each region lasts from the previous ``mark`` (or the start of the iteration) to this one,
    with a device synchronisation at both ends; a name marked twice in one iteration adds up.
    Regions of one iteration are interleaved, so drift hits all alike. Returns the timed
    iterations' seconds per region.
    """
    times: dict[str, list[float]] = defaultdict(list)
    for iteration in range(warmup + repeats):
        laps: dict[str, float] = {}
        sync(device)
        last = time.perf_counter()

        def mark(name: str, laps: dict[str, float] = laps) -> None:
            nonlocal last
            sync(device)
            now = time.perf_counter()
            laps[name] = laps.get(name, 0.0) + now - last
            last = now

        body(mark)
        if iteration >= warmup:
            for name, value in laps.items():
                times[name].append(value)
    return dict(times)


def median(values: list[float]) -> float:
    """Median of timed repeats."""
    return statistics.median(values)


def rounded(values: list[float], digits: int = 5) -> list[float]:
    """Values rounded for the JSON lines."""
    return [round(v, digits) for v in values]


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    """Forward FLOPs of the CPU fused attention: ``Q K^T`` plus ``P V``, 2 FLOPs per multiply-add."""
    *batch, q_len, qk_dim = query_shape
    k_len, v_dim = key_shape[-2], value_shape[-1]
    return 2 * math.prod(batch) * q_len * k_len * (qk_dim + v_dim)


def _cpu_attention_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    """Backward FLOPs of the CPU fused attention: recompute ``Q K^T`` and four more products (dQ, dK, dV, dP)."""
    *batch, q_len, qk_dim = query_shape
    k_len, v_dim = key_shape[-2], value_shape[-1]
    rows = math.prod(batch)
    return 2 * rows * q_len * k_len * (3 * qk_dim + 2 * v_dim)


def flop_mapping() -> dict:
    """Extra entries for ``FlopCounterMode(custom_mapping=...)``: the CPU fused attention kernels."""
    ops = torch.ops.aten
    mapping = {}
    if hasattr(ops, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[ops._scaled_dot_product_flash_attention_for_cpu] = _cpu_attention_flops
    if hasattr(ops, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        mapping[ops._scaled_dot_product_flash_attention_for_cpu_backward] = _cpu_attention_backward_flops
    return mapping


def count_flops(fn: Callable[[], object], device: torch.device) -> int:
    """FLOPs of one call of ``fn`` (everything it runs, backward included when it calls it)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False, custom_mapping=flop_mapping())
    with counter:
        fn()
    sync(device)
    return int(counter.get_total_flops())


def flop_fields(flops: int, seconds: float, peak_tflops: float | None = None, prefix: str = "") -> dict:
    """``{prefix}flops``, achieved ``{prefix}tflops_achieved`` and, given a peak, ``{prefix}mfu``."""
    achieved = flops / seconds / 1e12 if seconds > 0 else None
    fields = {f"{prefix}flops": flops, f"{prefix}tflops_achieved": round(achieved, 4) if achieved else None}
    if peak_tflops:
        fields[f"{prefix}mfu"] = round(achieved / peak_tflops, 4) if achieved else None
    return fields


def comparison_fields(seconds: float, reference_seconds: float, flops: int, reference_flops: int) -> dict:
    """Speed ratio (reference / this), FLOP ratio (reference / this) and ``ratio_of_limit`` = their quotient.

    ``ratio_of_limit`` = 1 means the speed-up is exactly what the FLOPs allow; below 1 the faster
    side loses part of its FLOP advantage (overheads outside the counted FLOPs, lower efficiency).
    """
    speed = reference_seconds / seconds
    flop_ratio = reference_flops / flops if flops else None
    return {"ratio": round(speed, 4), "flop_ratio": round(flop_ratio, 4) if flop_ratio else None,
            "ratio_of_limit": round(speed / flop_ratio, 4) if flop_ratio else None}


def peak_memory_gib(device: torch.device) -> float | None:
    """CUDA peak allocated memory since the last reset, in GiB (None on CPU)."""
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 3)


class Emitter:
    """Prints one JSON line per measurement with the fields shared by all of them."""

    def __init__(self, bench: str, common: dict):
        self.bench = bench
        self.common = common

    def __call__(self, **fields) -> None:
        print(json.dumps({"bench": self.bench, **self.common, **fields}), flush=True)


def logger(bench: str) -> Callable[[str], None]:
    """A progress printer to stderr, prefixed with the benchmark's name."""
    def log(message: str) -> None:
        print(f"[{bench}] {message}", file=sys.stderr, flush=True)

    return log


def write_speech_dir(folder, lengths: list[int], sample_rate: int = 16000, fmt: str = "FLAC", seed: int = 0):
    """Write a Kaldi data dir of generated speech-like files (``wav.scp`` + ``utt2num_samples``).

    Utterance ``i`` is ``lengths[i]`` samples at ``sample_rate``, written as 16-bit ``fmt``
    (``FLAC`` like LibriSpeech, or ``WAV``): a voiced tone with a drifting pitch and a syllable-rate
    envelope over low noise, so that FLAC compresses it roughly as it does speech (white noise
    would not compress at all and decode slower). ``utt2num_samples`` holds the length the
    loader returns at 16 kHz (for another rate: the resampled length, found by loading the file).
    Returns the folder as a :class:`~pathlib.Path`.
    """
    from pathlib import Path

    import numpy as np
    import soundfile as sf

    from audio_compress.data.kaldi import write_kaldi_map
    from compact_ssl.audio import load_audio

    folder = Path(folder)
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths, samples = {}, {}
    for i, n in enumerate(lengths):
        t = np.arange(n) / sample_rate
        pitch = 120.0 + 40.0 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 6.3))
        phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
        voiced = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t))
        wav = (0.2 * voiced + 0.01 * rng.standard_normal(n)).astype(np.float32)
        utt = f"utt{i:05d}"
        path = folder / "audio" / f"{utt}.{fmt.lower()}"
        sf.write(str(path), np.clip(wav, -1.0, 1.0), sample_rate, subtype="PCM_16", format=fmt)
        paths[utt] = str(path.resolve())
        samples[utt] = n if sample_rate == 16000 else len(load_audio(path, 16000, resample=True))
    write_kaldi_map(folder / "wav.scp", paths)
    write_kaldi_map(folder / "utt2num_samples", samples)
    return folder


def with_cpu_clock(body: Callable[[Callable[[str], None]], None], warmup: int):
    """Wrap a :func:`time_regions` body so that every region's process CPU seconds are kept too.

    Returns ``(wrapped_body, cpu)``; after ``time_regions(wrapped_body, warmup, ...)``, ``cpu()``
    gives the timed iterations' CPU seconds per region, like ``time_regions`` gives wall seconds
    (``time.process_time``: all threads of this process). On a shared machine a one-thread CPU
    run is slowed in wall time by the other processes but hardly in CPU time, so there the CPU
    ratio is the steadier one.
    """
    iterations: list[dict[str, float]] = []

    def wrapped(mark: Callable[[str], None]) -> None:
        laps: dict[str, float] = {}
        last = time.process_time()

        def cpu_mark(name: str) -> None:
            nonlocal last
            mark(name)
            now = time.process_time()
            laps[name] = laps.get(name, 0.0) + now - last
            last = now

        body(cpu_mark)
        iterations.append(laps)

    def cpu() -> dict[str, list[float]]:
        timed: dict[str, list[float]] = defaultdict(list)
        for laps in iterations[warmup:]:
            for name, value in laps.items():
                timed[name].append(value)
        return dict(timed)

    return wrapped, cpu
