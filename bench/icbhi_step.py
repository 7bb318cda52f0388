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
(``torch.cuda.synchronize()`` around each on GPU). The three models are built side by side and
every iteration runs, in turn, each method's clean forward and training step and then the parts
of the patchmix_cl step, so that drift on a shared machine hits every ratio alike. One JSON line per measurement on stdout
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
``patchmix_cl_cost_breakdown``
    Where Patch-Mix CL's extra cost over CE goes. The patchmix_cl step (``grad_block`` targets,
    the published setting) is run as its parts, in order, each timed (interleaved, medians) and
    FLOP-counted on its own: ``snapshot`` (the ``ma_beta`` copy), ``clean_forward`` (backbone,
    classifier, CE), ``clean_backward`` (CE alone), ``optimizer`` (Adam, ``ma_beta`` blend,
    zero_grad): the CE part; ``mix_plan`` (lambda, permutation and positions), ``mixed_forward``
    (the second backbone pass with the patches swapped), ``projector`` (the contrastive head),
    ``contrastive_loss`` and ``mixed_backward`` (the CL term's backward, a separate graph with
    detached targets): the extra. ``parts`` maps each name to ``seconds``, ``flops`` and, for the
    extra parts, ``share_of_extra`` (of the extra seconds). ``ratio`` = all parts / the CE part
    (time), ``flop_ratio`` the same for FLOPs, ``ratio_of_limit`` their quotient; summary fields
    ``second_forward_backward_*`` (mixed_forward + mixed_backward), ``mixing_*`` (mix_plan +
    ``mix_apply_seconds``, the patch swap alone, timed beside on the patch embeddings; it runs
    inside mixed_forward) and ``contrastive_head_loss_*`` (projector + contrastive_loss) in
    seconds and FLOPs; ``parts_vs_step`` = all parts / the real patchmix_cl step of
    ``train_step_vs_forward`` (near 1: the breakdown accounts for the step).
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
import torch.nn.functional as F
from _common import comparison_fields, count_flops, flop_fields, time_regions

from audio_cls.data import CycleFeatureDataset, make_mini_icbhi, prepare_icbhi, write_manifest
from audio_cls.data.cycles import cut_cycle, load_recording, pad_or_trim
from audio_cls.features import FeatureConfig, build_feature_cache, fbank, load_feature_cache
from audio_cls.losses import patchmix_contrastive_loss
from audio_cls.models import count_parameters
from audio_cls.patchmix import apply_patch_mix, draw_lambda, plan_patch_mix
from audio_cls.tasks import IcbhiTask, load_config

BENCH = "icbhi_step"
CONF = Path(__file__).resolve().parents[1] / "egs" / "icbhi" / "patchmix" / "conf"
METHODS = ("ce", "patchmix", "patchmix_cl")
CE_PARTS = ("snapshot", "clean_forward", "clean_backward", "optimizer")
CL_PARTS = ("mix_plan", "mixed_forward", "projector", "contrastive_loss", "mixed_backward")


def log(message: str) -> None:
    print(f"[{BENCH}] {message}", file=sys.stderr, flush=True)


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


def cl_step_parts(task: IcbhiTask, optimizer: torch.optim.Optimizer, spec, labels, autocast) -> dict:
    """The patchmix_cl training step (``grad_block`` targets) as named parts that run in order.

    Together they do what ``make_step`` does, except that the CE and CL terms are backpropagated
    one after the other (separate graphs: the CL target is the detached clean feature)."""
    args = task.config.method_args
    state: dict = {}

    def snapshot():
        task.on_train_batch_start((spec, labels, None), 0)

    def clean_forward():
        with autocast():
            state["clean"] = task.backbone(spec)
            state["ce"] = F.cross_entropy(task.classifier(state["clean"]), labels, weight=task.class_weight)

    def mix_plan():
        state["plan"] = plan_patch_mix(labels.shape[0], task.backbone.grid, draw_lambda(args.mix_beta),
                                       args.time_domain)

    def mixed_forward():
        with autocast():
            state["mixed_feat"] = task.backbone(spec, mix=state["plan"])

    def projector():
        with autocast():
            state["mixed"] = task.projector(state["mixed_feat"])

    def contrastive_loss():
        plan = state["plan"]
        with autocast():
            state["cl"] = patchmix_contrastive_loss(state["mixed"], state["clean"].detach(), plan.perm, plan.lam,
                                                    args.temperature, labels, args.negative_pair)

    def clean_backward():
        state["ce"].backward()

    def mixed_backward():
        (args.alpha * state["cl"]).backward()

    def optimizer_step():
        task.optimizer_step(0, 0, optimizer, lambda: None)
        optimizer.zero_grad(set_to_none=True)

    return {"snapshot": snapshot, "clean_forward": clean_forward, "mix_plan": mix_plan, "mixed_forward": mixed_forward,
            "projector": projector, "contrastive_loss": contrastive_loss, "clean_backward": clean_backward,
            "mixed_backward": mixed_backward, "optimizer": optimizer_step}


def emit_cl_breakdown(emit, parts: list[str], seconds: dict[str, float], flops: dict[str, int],
                      step_s: dict[str, float]) -> None:
    """The ``patchmix_cl_cost_breakdown`` line from the parts' median seconds and FLOPs."""
    ce_s, cl_s = sum(seconds[p] for p in CE_PARTS), sum(seconds[p] for p in CL_PARTS)
    ce_f, cl_f = sum(flops[p] for p in CE_PARTS), sum(flops[p] for p in CL_PARTS)
    limit = comparison_fields(ce_s, ce_s + cl_s, ce_f, ce_f + cl_f)

    def pair(*names: str, extra: float = 0.0) -> dict:
        return {"seconds": round(sum(seconds[n] for n in names) + extra, 5), "flops": sum(flops[n] for n in names)}

    summary = {"second_forward_backward": pair("mixed_forward", "mixed_backward"),
               "mixing": pair("mix_plan", extra=seconds["mix_apply"]),
               "contrastive_head_loss": pair("projector", "contrastive_loss")}
    emit(what="patchmix_cl_cost_breakdown", method="patchmix_cl", ratio=round((ce_s + cl_s) / ce_s, 3),
         flop_ratio=limit["flop_ratio"], ratio_of_limit=limit["ratio_of_limit"], seconds=round(ce_s + cl_s, 4),
         reference="the CE part of the step (snapshot, clean forward and backward, optimizer)",
         reference_seconds=round(ce_s, 4), flops=ce_f + cl_f, reference_flops=ce_f,
         parts={name: {"seconds": round(seconds[name], 5), "flops": flops[name],
                       **({"share_of_extra": round(seconds[name] / cl_s, 4)} if name in CL_PARTS else {})}
                for name in parts},
         mix_apply_seconds=round(seconds["mix_apply"], 6),
         **{f"{key}_{unit}": value[unit] for key, value in summary.items() for unit in ("seconds", "flops")},
         parts_vs_step=round((ce_s + cl_s) / step_s["patchmix_cl"], 3), ce_step_seconds=round(step_s["ce"], 4),
         target_type="grad_block")


def bench_models(args, device: torch.device, emit) -> None:
    """All methods' clean forwards and steps and the parts of the patchmix_cl step, interleaved in
    every iteration (all models alive at once), so that drift hits every ratio alike."""
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else nullcontext
    torch.manual_seed(args.seed)
    spec = torch.randn(args.batch, 798, 128, device=device) * 0.5
    labels = torch.arange(args.batch, device=device) % 4
    batch = (spec, labels, torch.arange(args.batch, device=device))
    configs, params, forwards, steps = {}, {}, {}, {}
    parts: dict = {}
    for method in METHODS:
        configs[method] = load_config(CONF / f"{method}.yaml", ["model.init=random", *args.set])
        task = IcbhiTask(configs[method], class_counts=[2063, 1215, 501, 363]).to(device)
        optimizer = task.configure_optimizers()["optimizer"]
        params[method] = count_parameters(task)
        log(f"{method}: {params[method]:,} parameters")

        def forward(task: IcbhiTask = task) -> None:
            task.eval()
            with torch.no_grad(), autocast():
                task(spec)
            task.train()

        forwards[method], steps[method] = forward, make_step(task, optimizer, batch, autocast)
        if method == "patchmix_cl" and configs[method].method_args.target_type == "grad_block":
            parts = cl_step_parts(task, optimizer, spec, labels, autocast)
            patches = task.backbone.ast.embeddings.patch_embeddings(spec).detach()
            swap = plan_patch_mix(args.batch, task.backbone.grid, 0.5)  # half the patches: Beta(1, 1)'s mean
        elif method == "patchmix_cl":
            log("cost breakdown skipped: it splits the grad_block step, not "
                f"target_type={configs[method].method_args.target_type}")

    def body(mark) -> None:
        for method in METHODS:
            forwards[method]()
            mark(f"{method}/forward")
            steps[method]()
            mark(f"{method}/step")
        for name, part in parts.items():
            part()
            mark(name)
        if parts:
            apply_patch_mix(patches, swap)
            mark("mix_apply")

    log(f"timing the clean forwards, the steps{' and the patchmix_cl parts' if parts else ''}, interleaved")
    times = time_regions(body, args.warmup, args.repeats, device)
    log("counting FLOPs")
    step_s = {m: statistics.median(times[f"{m}/step"]) for m in METHODS}
    step_flops = {m: count_flops(steps[m], device) for m in METHODS}
    for method in METHODS:
        fwd, step = times[f"{method}/forward"], times[f"{method}/step"]
        fwd_s, fwd_flops = statistics.median(fwd), count_flops(forwards[method], device)
        # ratio = step / forward here (a cost), so the comparison is taken the other way round.
        limit = comparison_fields(fwd_s, step_s[method], fwd_flops, step_flops[method])
        emit(what="train_step_vs_forward", method=method, ratio=round(step_s[method] / fwd_s, 3),
             flop_ratio=limit["flop_ratio"], ratio_of_limit=limit["ratio_of_limit"],
             seconds=round(step_s[method], 4), reference="clean forward (eval, no_grad)",
             reference_seconds=round(fwd_s, 4), params=params[method], **flop_fields(step_flops[method], step_s[method]),
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
            desired = configs[method].features.desired_length
            emit(what="inference_per_cycle", method=method, ratio=round(desired / per_cycle, 2),
                 seconds=round(per_cycle, 5), reference="audio seconds of one cycle", reference_seconds=desired,
                 unit="audio-seconds classified per second",
                 train_step_seconds_per_cycle=round(step_s["ce"] / args.batch, 5))
    if parts:
        seconds = {name: statistics.median(times[name]) for name in [*parts, "mix_apply"]}
        flops = {name: count_flops(part, device) for name, part in parts.items()}  # in order: each needs the last
        emit_cl_breakdown(emit, list(parts), seconds, flops, step_s)


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
