"""Benchmark ICBHI training steps, inference per cycle and the feature cache at real sizes.

Setup: the full-size AST (``ast_base``: 85,984,512 backbone parameters, 12 x 79 patches + 2
tokens for an 8 s cycle) with random weights inside :class:`audio_cls.tasks.IcbhiTask`, built
from the published configs ``egs/icbhi/patchmix/conf/<method>.yaml`` (``model.init=random``,
nothing else changed), Adam as configured by the task, and a batch of ``--batch`` random
normalized fbank inputs (B, 798, 128) with labels cycling through the four classes. A training
step runs the task's own code: the moving-average snapshot (``on_train_batch_start``), the
method's loss and backward inside ``optimizer_step`` (Adam, then the ``ma_beta`` blend), and
``zero_grad``. With ``--device cuda`` the loss runs under bf16 autocast.

Every number is the median of ``--repeats`` timed iterations after ``--warmup`` untimed ones
(``torch.cuda.synchronize()`` around each on GPU). One JSON line per measurement on stdout
(progress on stderr); ``ratio`` is against a ``reference`` measured in the same run, absolute
seconds are extra fields:

``train_step_vs_forward`` (per method)
    ``ratio`` = training step / clean forward (eval, no_grad) of the same batch: what a step
    costs in forward passes (patchmix_cl runs two forwards and backpropagates through both).
    ``flop_ratio`` = the same quotient of FLOPs (``torch.utils.flop_counter``, forward and
    backward), ``ratio_of_limit`` = ratio / flop_ratio (above 1: cost beyond the FLOPs); ``flops`` / ``tflops_achieved`` and
    ``reference_flops`` / ``reference_tflops_achieved`` per side.
``train_step_vs_ce`` (patchmix, patchmix_cl)
    ``ratio`` = the method's step / the cross-entropy step: the price of the method;
    ``flop_ratio`` says how much of it is extra model FLOPs (a second forward and backward)
    rather than overhead outside the counted matmuls.
``inference_per_cycle``
    ``seconds`` = eval forward time per cycle (batched); ``ratio`` = 8 s of audio / that time
    (audio-seconds classified per second); ``train_step_seconds_per_cycle`` for comparison.
``feature_cache_speedup``
    Input pipeline per cycle on a synthesized ICBHI-format corpus (44.1 kHz and 4 kHz recordings,
    as in ICBHI; ``--icbhi_root`` uses real recordings instead). ``reference_seconds``: what a
    dataset without the cache does for every item (read and resample the recording, fade, cut,
    pad to 8 s, Kaldi fbank); ``seconds``: one item of :class:`CycleFeatureDataset` from the
    memory-mapped cache. ``ratio`` = reference / cached. ``fbank_only_seconds`` leaves out
    reading and resampling; ``build_seconds_per_cycle`` is the one-time cost of the cache.

Examples::

    python bench/icbhi_step.py --quick              # batch 2, one repeat (CPU smoke run)
    python bench/icbhi_step.py                      # CPU: batch 2, 2 repeats (minutes)
    python bench/icbhi_step.py --device cuda        # batch 8 (the paper's), 5 repeats

This is a benchmark, not a test: it asserts nothing about the numbers.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from _common import comparison_fields, count_flops, flop_fields

from audio_cls.data import CycleFeatureDataset, make_mini_icbhi, prepare_icbhi, write_manifest
from audio_cls.data.cycles import cut_cycle, load_recording, pad_or_trim
from audio_cls.features import FeatureConfig, build_feature_cache, fbank, load_feature_cache
from audio_cls.models import count_parameters
from audio_cls.tasks import IcbhiTask, load_config

BENCH = "icbhi_step"
CONF = Path(__file__).resolve().parents[1] / "egs" / "icbhi" / "patchmix" / "conf"
METHODS = ("ce", "patchmix", "patchmix_cl")


def log(message: str) -> None:
    print(f"[{BENCH}] {message}", file=sys.stderr, flush=True)


def timed(fn, warmup: int, repeats: int, device: torch.device) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    times = []
    for i in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def make_step(task: IcbhiTask, optimizer: torch.optim.Optimizer, batch, autocast):
    """One training step through the task's own hooks (snapshot, loss, Adam, ``ma_beta`` blend)."""
    spec, labels, index = batch

    def closure():
        with autocast():
            loss = task.compute_loss(spec, labels)["loss"]
        loss.backward()
        return loss

    def step():
        task.on_train_batch_start((spec, labels, index), 0)
        task.optimizer_step(0, 0, optimizer, closure)
        optimizer.zero_grad(set_to_none=True)

    return step


def bench_models(args, device: torch.device, emit) -> None:
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else nullcontext
    torch.manual_seed(args.seed)
    spec = torch.randn(args.batch, 798, 128, device=device) * 0.5
    labels = torch.arange(args.batch, device=device) % 4
    batch = (spec, labels, torch.arange(args.batch, device=device))
    step_s: dict[str, float] = {}
    step_flops: dict[str, int] = {}
    for method in METHODS:
        overrides = ["model.init=random", *args.set]
        config = load_config(CONF / f"{method}.yaml", overrides)
        task = IcbhiTask(config, class_counts=[2063, 1215, 501, 363]).to(device)
        optimizer = task.configure_optimizers()["optimizer"]
        params = count_parameters(task)
        log(f"{method}: {params:,} parameters; timing the clean forward")

        def forward(task: IcbhiTask = task) -> None:
            task.eval()
            with torch.no_grad(), autocast():
                task(spec)
            task.train()

        fwd = timed(forward, args.warmup, args.repeats, device)
        log(f"{method}: timing the training step")
        train_step = make_step(task, optimizer, batch, autocast)
        step = timed(train_step, args.warmup, args.repeats, device)
        step_s[method], fwd_s = statistics.median(step), statistics.median(fwd)
        step_flops[method], fwd_flops = count_flops(train_step, device), count_flops(forward, device)
        # ratio = step / forward here (a cost), so the comparison is taken the other way round.
        limit = comparison_fields(fwd_s, step_s[method], fwd_flops, step_flops[method])
        emit(what="train_step_vs_forward", method=method, ratio=round(step_s[method] / fwd_s, 3),
             flop_ratio=limit["flop_ratio"], ratio_of_limit=limit["ratio_of_limit"],
             seconds=round(step_s[method], 4), reference="clean forward (eval, no_grad)",
             reference_seconds=round(fwd_s, 4), params=params, **flop_fields(step_flops[method], step_s[method]),
             **flop_fields(fwd_flops, fwd_s, prefix="reference_"), seconds_all=[round(t, 4) for t in step],
             reference_seconds_all=[round(t, 4) for t in fwd])
        if method != "ce":
            limit = comparison_fields(step_s["ce"], step_s[method], step_flops["ce"], step_flops[method])
            emit(what="train_step_vs_ce", method=method, ratio=round(step_s[method] / step_s["ce"], 3),
                 flop_ratio=limit["flop_ratio"], ratio_of_limit=limit["ratio_of_limit"],
                 seconds=round(step_s[method], 4), reference="ce training step",
                 reference_seconds=round(step_s["ce"], 4), flops=step_flops[method], reference_flops=step_flops["ce"])
        else:
            per_cycle = fwd_s / args.batch
            emit(what="inference_per_cycle", method=method,
                 ratio=round(config.features.desired_length / per_cycle, 2), seconds=round(per_cycle, 5),
                 reference="audio seconds of one cycle", reference_seconds=config.features.desired_length,
                 unit="audio-seconds classified per second",
                 train_step_seconds_per_cycle=round(step_s["ce"] / args.batch, 5))
        del task, optimizer  # free the full-size model before building the next one
        if device.type == "cuda":
            torch.cuda.empty_cache()


def bench_cache(args, emit) -> None:
    config = FeatureConfig()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.icbhi_root:
            corpus = prepare_icbhi(args.icbhi_root, missing_audio="skip")
        else:
            log("synthesizing an ICBHI-format corpus for the input pipeline")
            corpus = prepare_icbhi(make_mini_icbhi(tmp / "corpus", seed=args.seed, num_recordings=12).root)
        records = [r for split in corpus.cycles.values() for r in split][: args.cycles]
        manifest = tmp / "all" / "cycles.tsv"
        write_manifest(records, manifest)
        torch.set_num_threads(1)  # what the cache builder and a data-loader worker use
        start = time.perf_counter()
        cache = load_feature_cache(build_feature_cache(manifest, config, tmp / "cache", progress=False))
        build_s = (time.perf_counter() - start) / len(records)
        dataset = CycleFeatureDataset(cache.feats, cache.labels)

        def on_the_fly(record):
            wave = load_recording(record.audio, config.sample_rate, config.resampler)
            cycle = pad_or_trim(cut_cycle(wave, config.sample_rate, record.start, record.end), config.num_samples)
            return fbank(cycle, config)

        waves = {r.audio: load_recording(r.audio) for r in records}

        def fbank_only(record):
            return fbank(pad_or_trim(cut_cycle(waves[record.audio], 16000, record.start, record.end), 128000), config)

        def per_item(fn) -> list[float]:
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                for i, record in enumerate(records):
                    fn(i, record)
                times.append((time.perf_counter() - start) / len(records))
            return times

        per_item(lambda i, r: dataset[i])  # warm the page cache like a second epoch would
        cached = per_item(lambda i, r: dataset[i])
        fly = per_item(lambda i, r: on_the_fly(r))
        only = per_item(lambda i, r: fbank_only(r))
        cached_s, fly_s = statistics.median(cached), statistics.median(fly)
        emit(what="feature_cache_speedup", ratio=round(fly_s / cached_s, 2), seconds=round(cached_s, 6),
             reference="per-item read + resample + cut/pad + fbank", reference_seconds=round(fly_s, 6),
             fbank_only_seconds=round(statistics.median(only), 6), build_seconds_per_cycle=round(build_s, 6),
             cycles=len(records), corpus=str(args.icbhi_root or "synthesized (44.1 kHz + 4 kHz)"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=None, help="cycles per batch (default: 8 on CUDA, 2 on CPU)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default: 5 on CUDA, 2 on CPU)")
    parser.add_argument("--cycles", type=int, default=40, help="cycles timed in the input-pipeline measurement")
    parser.add_argument("--icbhi_root", default="", help="time the input pipeline on real ICBHI recordings")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for the model (0: torch default)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every method (repeatable), e.g. model.arch=ast_tiny for dry runs")
    parser.add_argument("--quick", action="store_true", help="batch 2, one repeat: a smoke run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available")
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    if args.quick:
        args.batch, args.repeats, args.cycles = 2, 1, 20
    args.batch = args.batch or (8 if device.type == "cuda" else 2)
    args.repeats = args.repeats or (5 if device.type == "cuda" else 2)
    if args.threads:
        torch.set_num_threads(args.threads)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    common = {"bench": BENCH, "device": device.type, "device_name": device_name,
              "threads": torch.get_num_threads(), "batch_size": args.batch, "repeats": args.repeats,
              "dtype": "bf16-autocast" if device.type == "cuda" else "fp32"}

    def emit(**fields) -> None:
        print(json.dumps({**common, **fields}), flush=True)

    log(f"device={device} batch={args.batch} warmup={args.warmup} repeats={args.repeats} torch={torch.__version__}")
    bench_models(args, device, emit)
    bench_cache(args, emit)


if __name__ == "__main__":
    main()
