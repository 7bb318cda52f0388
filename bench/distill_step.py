"""Benchmark one distillation training step and student-vs-teacher inference at real sizes.

Setup: the HuBERT Base teacher (``load_teacher("hubert_base")``, random weights, 94.4 M
parameters) and the students named by ``--students`` (default STaRHuBERT with method ``star``
and ARMHuBERT with method ``armhubert``; ``name:method`` picks another method), built through
:class:`audio_compress.tasks.distill.DistillationTask` exactly as a recipe does (config from
:func:`audio_compress.tasks.config.load_config`, defaults otherwise). The batch is a realistic
padded :class:`~audio_compress.data.dataset.WaveBatch` of ``--batch`` random waveforms whose
lengths cycle through 100 %, 90 %, 85 % and 70 % of ``--seconds`` (default 4 x 10 s: 10, 9, 8.5
and 7 s, 34.5 s of valid audio), with a sample-level padding mask.

Every number is the median of ``--repeats`` timed iterations after ``--warmup`` untimed ones, with
``torch.cuda.synchronize()`` around every timed region on GPU. With ``--dtype bf16`` the
forwards run under ``torch.autocast(dtype=torch.bfloat16)`` (what Lightning's ``bf16-mixed``
does); backward and the optimizer step run outside it.

Output: one JSON line per measurement on stdout (progress goes to stderr). Speeds are ratios
against a reference measured in the same run; absolute seconds are extra fields. Per student:

``train_step_vs_parts``
    ``seconds``: one full training step = ``task.compute_loss(batch, train=True)["loss"]
    .backward()``, gradient-norm clipping at ``optim.grad_clip`` (Lightning's
    ``gradient_clip_val``, as in ``bin/distill.py``), ``AdamW.step()``, ``zero_grad()``.
    ``reference_seconds``: the sum of its parts, timed alone in the same loop iterations
    (interleaved with the step, so drift hits both alike): the teacher forward(s) under no_grad
    (ARMHuBERT: clean + masked, with a span mask sampled beforehand), the student forward +
    backward with a trivial loss (mean of squares of the tensors the method distils: STaR the
    pre-Transformer input and every layer, ARMHuBERT the projection heads on masked input,
    DistilHuBERT the prediction heads) and the clip + optimizer step + zero_grad.
    ``ratio`` = step / parts: 1.0 means our wiring and the real loss cost nothing beyond the
    parts; 1.15 means 15 % overhead (loss terms such as the temporal Gram matrices, the CPU
    span-mask sampling of ARMHuBERT, host syncs). Values a little below 1 are timing noise.
    ``step_flops`` / ``parts_flops``: FLOPs of one counted step and of the counted parts;
    ``flop_ratio`` = step_flops / parts_flops (the loss's own matmuls, e.g. the Grams) and
    ``ratio_of_limit`` = ratio / flop_ratio (1.0: the step costs exactly its extra FLOPs).

``inference_speedup``
    Student forward (eval mode, no_grad) vs teacher forward on the same batch, interleaved.
    ``ratio`` = teacher time / student time (> 1: the student is that many times faster).
    ``flop_ratio`` = teacher FLOPs / student FLOPs (the speed-up the FLOPs allow) and
    ``ratio_of_limit`` = ratio / flop_ratio (1.0: the student is as fast as its FLOPs allow);
    ``student_flops`` / ``student_tflops_achieved`` and the teacher's likewise.
    ``student_params`` / ``teacher_params`` and their ratio are included
    (``student_params_excl_heads`` leaves out projection / prediction heads).

``train_audio_throughput``
    ``ratio`` = valid audio seconds in the batch / training step seconds: audio-seconds trained
    per wall-clock second, the same number as ``audio_hours_per_device_hour``; one pass over
    960 h of LibriSpeech takes ``hours_per_960h_epoch`` = ``960 / ratio`` hours with this batch
    shape on this device.

``train_tflops``
    FLOPs of one training step counted with :class:`torch.utils.flop_counter.FlopCounterMode`
    (matmuls, convolutions and attention kernels, forward and backward, teacher included; one
    separate counted step), divided by the median step time: ``tflops_achieved``. ``ratio`` =
    achieved / ``peak_tflops`` (model FLOP utilisation); the peak is ``--peak_tflops``
    (default on CUDA: the device's dense bf16 peak from the table in ``bench/_common.py``; on
    CPU there is none and the ratio is null unless it is given). ``step_peak_mem_gib`` is the
    CUDA peak memory over the timed steps and parts.

Examples::

    python bench/distill_step.py --quick                # smoke run, 2 x 4 s
    python bench/distill_step.py --device cpu           # real sizes on CPU (minutes)
    python bench/distill_step.py --device cuda          # bf16 autocast, 5 repeats
    python bench/distill_step.py --device cuda --compile  # the same with torch.compile on the student

This is a benchmark, not a test: it asserts nothing about the numbers.
"""

from __future__ import annotations

import argparse
import gc
import math
from contextlib import nullcontext

import torch
from _common import (
    Emitter,
    comparison_fields,
    count_flops,
    device_name,
    flop_fields,
    logger,
    median,
    peak_memory_gib,
    peak_tflops_for,
    rounded,
    time_regions,
)
from torch import Tensor

from audio_compress.data.dataset import WaveBatch
from audio_compress.frames import RECEPTIVE_FIELD, SAMPLE_RATE, frame_padding_mask, num_frames
from audio_compress.losses import sample_span_mask
from audio_compress.models import count_parameters, get_student_config
from audio_compress.tasks.config import load_config
from audio_compress.tasks.distill import DistillationTask
from audio_compress.teachers import load_teacher

BENCH = "distill_step"
LENGTH_PATTERN = (1.0, 0.9, 0.85, 0.7)  #: row lengths as fractions of --seconds, cycled
log = logger(BENCH)


# ---------------------------------------------------------------------- helpers


def default_method(student: str) -> str:
    """Distillation method a registered student is made for."""
    config = get_student_config(student)
    if config.pred_layers:
        return "distilhubert"
    if config.mask_emb and config.proj_dim is not None:
        return "armhubert"
    return "star"


def utterance_lengths(batch_size: int, seconds: float) -> list[int]:
    """Samples of each row: ``LENGTH_PATTERN`` of ``seconds``, cycled (never below the receptive field)."""
    longest = int(round(seconds * SAMPLE_RATE))
    if longest < RECEPTIVE_FIELD:
        raise SystemExit(f"--seconds {seconds} is below the {RECEPTIVE_FIELD}-sample receptive field")
    return [max(RECEPTIVE_FIELD, int(round(longest * LENGTH_PATTERN[i % len(LENGTH_PATTERN)])))
            for i in range(batch_size)]


def make_batch(batch_size: int, seconds: float, seed: int) -> WaveBatch:
    """Random padded batch; row ``i`` has ``LENGTH_PATTERN[i % 4] * seconds`` of audio."""
    max_len = int(round(seconds * SAMPLE_RATE))
    lengths = utterance_lengths(batch_size, seconds)
    generator = torch.Generator().manual_seed(seed)
    wavs = 0.1 * torch.randn(batch_size, max_len, generator=generator)
    padding_mask = torch.arange(max_len).unsqueeze(0) >= torch.tensor(lengths).unsqueeze(1)
    wavs = wavs.masked_fill(padding_mask, 0.0)
    return WaveBatch(wavs, padding_mask, torch.tensor(lengths), [f"utt{i}" for i in range(batch_size)])


# ---------------------------------------------------------------------- one student


class StudentBench:
    """Task, optimizer and the step / part / inference closures of one student."""

    def __init__(self, student: str, method: str, teacher, batch: WaveBatch, device: torch.device,
                 autocast, seed: int):
        self.method = method
        self.device = device
        self.autocast = autocast
        torch.manual_seed(seed)
        config = load_config(None, [f"method={method}", f"student={student}", f"trainer.seed={seed}"])
        self.config = config
        self.task = DistillationTask(config, teacher=teacher).to(device)
        self.task.train()
        self.student = self.task.student
        self.teacher = self.task.teacher
        self.batch = batch
        opt = config.optim
        decay, no_decay = [], []
        for name, param in self.student.named_parameters():  # the groups of configure_optimizers
            if param.requires_grad:
                (no_decay if param.dim() <= 1 or name.endswith(".bias") else decay).append(param)
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": opt.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps,
        )
        self.params = [p for p in self.student.parameters() if p.requires_grad]
        self.grad_clip = opt.grad_clip
        self.last_loss: Tensor | None = None
        self.frame_mask = None
        if method == "armhubert":  # a fixed span mask for the parts (the step samples its own)
            cfg = config.loss
            pad = frame_padding_mask(batch.padding_mask, num_frames(batch.wavs.shape[1])).cpu()
            self.frame_mask = sample_span_mask(
                tuple(pad.shape), cfg.mask_prob, cfg.mask_length, padding_mask=pad, min_masks=cfg.min_masks,
                generator=torch.Generator().manual_seed(seed),
            ).to(device)

    # -- pieces
    def optimizer_step(self) -> None:
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad()

    def train_step(self) -> None:
        with self.autocast():
            loss = self.task.compute_loss(self.batch, train=True)["loss"]
        loss.backward()
        self.optimizer_step()
        self.last_loss = loss.detach()

    def teacher_forward(self, masked: bool = False) -> None:
        with self.autocast():
            self.teacher(self.batch.wavs, padding_mask=self.batch.padding_mask,
                         frame_mask=self.frame_mask if masked else None)

    def student_forward_backward(self) -> None:
        with self.autocast():
            if self.method == "armhubert":
                out = self.student(self.batch.wavs, padding_mask=self.batch.padding_mask, frame_mask=self.frame_mask)
                used = out.projections
            else:
                out = self.student(self.batch.wavs, padding_mask=self.batch.padding_mask)
                used = [out.pre_transformer, *out.hidden_states] if self.method == "star" else [out.predictions]
            loss = sum(t.float().pow(2).mean() for t in used)
        loss.backward()

    @property
    def teacher_forwards(self) -> int:
        return 2 if self.method == "armhubert" else 1

    # -- measurements
    def time_step_and_parts(self, warmup: int, repeats: int) -> dict[str, list[float]]:
        def body(mark):
            self.train_step()
            mark("step")
            self.teacher_forward()
            mark("teacher_fwd")
            if self.method == "armhubert":
                self.teacher_forward(masked=True)
                mark("teacher_fwd")  # accumulates: clean + masked
            self.student_forward_backward()
            mark("student_fwd_bwd")
            self.optimizer_step()
            mark("optimizer_step")

        return time_regions(body, warmup, repeats, self.device)

    def time_inference(self, warmup: int, repeats: int) -> dict[str, list[float]]:
        self.student.eval()
        try:
            def body(mark):
                self.teacher_forward()
                mark("teacher")
                self.student_inference()
                mark("student")

            return time_regions(body, warmup, repeats, self.device)
        finally:
            self.task.train()

    def count_step_flops(self) -> tuple[int, float | None]:
        """FLOPs of one training step and its CUDA peak memory in GiB (None on CPU)."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        flops = count_flops(self.train_step, self.device)
        return flops, peak_memory_gib(self.device)

    def count_part_flops(self) -> int:
        """FLOPs of the parts :meth:`time_step_and_parts` times beside the step."""
        flops = count_flops(self.teacher_forward, self.device) * self.teacher_forwards
        flops += count_flops(self.student_forward_backward, self.device)
        self.optimizer.zero_grad()
        return flops

    def student_inference(self) -> None:
        with torch.no_grad(), self.autocast():
            self.student(self.batch.wavs, padding_mask=self.batch.padding_mask)

    def count_inference_flops(self) -> tuple[int, int]:
        """Forward FLOPs of the student (eval) and of the teacher on the batch."""
        self.student.eval()
        try:
            return count_flops(self.student_inference, self.device), count_flops(self.teacher_forward, self.device)
        finally:
            self.task.train()

    def close(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        del self.optimizer, self.task, self.student


# ---------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default=None,
                        help="autocast dtype (default: bf16 on CUDA, fp32 on CPU)")
    parser.add_argument("--batch", type=int, default=4, help="utterances per batch (default 4)")
    parser.add_argument("--seconds", type=float, default=10.0, help="longest utterance in seconds (default 10)")
    parser.add_argument("--students", default="starhubert,armhubert",
                        help="comma-separated students, each optionally name:method (default starhubert,armhubert)")
    parser.add_argument("--teacher", default="hubert_base", help="teacher architecture or path (default hubert_base)")
    parser.add_argument("--repeats", type=int, default=None, help="timed iterations (default 5 on GPU, 3 on CPU)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--peak_tflops", type=float, default=None,
                        help="peak TFLOP/s for the utilisation ratio (default: the device's dense bf16 peak from "
                             "bench/_common.py on CUDA, none on CPU)")
    parser.add_argument("--no_flops", action="store_true", help="skip the FLOP counts")
    parser.add_argument("--compile", action="store_true", help="torch.compile the student (module.compile())")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke run: batch 2 x 4 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.seconds = 2, 4.0
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available")
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    dtype = args.dtype or ("bf16" if device.type == "cuda" else "fp32")
    repeats = args.repeats or (5 if device.type == "cuda" else 3)
    if args.threads:
        torch.set_num_threads(args.threads)
    name_of_device = device_name(device)
    peak_tflops = args.peak_tflops if args.peak_tflops is not None else (
        peak_tflops_for(name_of_device) if device.type == "cuda" else None)
    autocast_dtype = torch.bfloat16 if dtype == "bf16" else None

    def autocast():
        if autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=device.type, dtype=autocast_dtype)

    students = []
    for item in filter(None, (s.strip() for s in args.students.split(","))):
        name, _, method = item.partition(":")
        students.append((name, method or default_method(name)))

    torch.manual_seed(args.seed)
    batch = make_batch(args.batch, args.seconds, args.seed).to(device)
    audio_s = float(batch.lengths.sum()) / SAMPLE_RATE
    teacher = load_teacher(args.teacher, device=device, seed=args.seed)
    teacher_params = sum(p.numel() for p in teacher.parameters())

    emit = Emitter(BENCH, {
        "device": device.type, "device_name": name_of_device, "dtype": dtype,
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "batch_size": args.batch, "max_utt_s": args.seconds, "audio_s": round(audio_s, 3),
        "teacher": args.teacher, "warmup": args.warmup, "repeats": repeats, "compile": args.compile,
    })
    log(f"device={device} ({name_of_device}) dtype={dtype} batch={args.batch} x {args.seconds:g} s "
        f"(lengths {[int(n) for n in batch.lengths]} samples, {audio_s:g} s of audio) warmup={args.warmup} "
        f"repeats={repeats} peak_tflops={peak_tflops} compile={args.compile} torch={torch.__version__}")

    for name, method in students:
        log(f"{name} ({method}): building")
        bench = StudentBench(name, method, teacher, batch, device, autocast, args.seed)
        common = {"student": name, "method": method}
        student_params = count_parameters(bench.student)
        if args.compile:
            bench.student.compile()

        log(f"{name}: timing training step and its parts")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = bench.time_step_and_parts(args.warmup, repeats)
        step_peak_mem = peak_memory_gib(device)
        parts = ["teacher_fwd", "student_fwd_bwd", "optimizer_step"]
        parts_sum = [sum(times[p][i] for p in parts) for i in range(repeats)]
        step_s = median(times["step"])
        parts_s = median(parts_sum)
        step_flops = part_flops = None
        if not args.no_flops:
            log(f"{name}: counting FLOPs of the step and of its parts")
            step_flops, _ = bench.count_step_flops()
            part_flops = bench.count_part_flops()
        flops = ({"step_flops": step_flops, "parts_flops": part_flops,
                  **{k: v for k, v in comparison_fields(parts_s, step_s, part_flops, step_flops).items() if k != "ratio"}}
                 if step_flops else {})
        emit(**common, what="train_step_vs_parts", ratio=round(step_s / parts_s, 4), seconds=round(step_s, 5),
             reference=f"teacher_fwd x{bench.teacher_forwards} + student_fwd_bwd (trivial loss) + optimizer_step",
             reference_seconds=round(parts_s, 5), **flops,
             teacher_fwd_seconds=round(median(times["teacher_fwd"]), 5),
             student_fwd_bwd_seconds=round(median(times["student_fwd_bwd"]), 5),
             optimizer_step_seconds=round(median(times["optimizer_step"]), 5),
             teacher_forwards=bench.teacher_forwards,
             step_seconds_all=rounded(times["step"]), reference_seconds_all=rounded(parts_sum),
             loss=float(bench.last_loss))
        if not math.isfinite(float(bench.last_loss)):
            log(f"{name}: warning, the training loss is not finite ({float(bench.last_loss)})")

        emit(**common, what="train_audio_throughput", ratio=round(audio_s / step_s, 3), seconds=round(step_s, 5),
             reference="valid audio seconds in the batch", reference_seconds=round(audio_s, 3),
             unit="audio-seconds per second", audio_hours_per_device_hour=round(audio_s / step_s, 3),
             hours_per_960h_epoch=round(960 * 3600 / (audio_s / step_s) / 3600, 2))

        if step_flops:
            fields = flop_fields(step_flops, step_s, peak_tflops)
            emit(**common, what="train_tflops", ratio=fields.get("mfu"), seconds=round(step_s, 5),
                 reference="peak_tflops", reference_seconds=None, tflops_achieved=fields["tflops_achieved"],
                 peak_tflops=peak_tflops, flops_per_step=step_flops, step_peak_mem_gib=step_peak_mem)

        log(f"{name}: timing inference (student vs teacher)")
        times = bench.time_inference(args.warmup, repeats)
        student_s, teacher_s = median(times["student"]), median(times["teacher"])
        inference = {"ratio": round(teacher_s / student_s, 4)}
        if not args.no_flops:
            student_flops, teacher_flops = bench.count_inference_flops()
            inference = {**comparison_fields(student_s, teacher_s, student_flops, teacher_flops),
                         **flop_fields(student_flops, student_s, peak_tflops, prefix="student_"),
                         **flop_fields(teacher_flops, teacher_s, peak_tflops, prefix="teacher_")}
        emit(**common, what="inference_speedup", **inference, seconds=round(student_s, 5),
             reference="teacher_fwd", reference_seconds=round(teacher_s, 5),
             student_params=student_params,
             student_params_excl_heads=count_parameters(bench.student, exclude=("proj_heads", "pred_head")),
             teacher_params=teacher_params, param_ratio=round(teacher_params / student_params, 3),
             seconds_all=rounded(times["student"]), reference_seconds_all=rounded(times["teacher"]))

        bench.close()
        del bench
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()

if __name__ == "__main__":
    main()
