"""Benchmark the training cost of SelfCon-S against SupCon (two views) at CIFAR size.

Setup: the recipe configs ``egs/cifar100/selfcon/conf/selfcon_s_r18.yaml`` (SelfCon-S: one view,
ResNet-18 CIFAR layout, an ``fc`` sub-network after layer2, two projection heads) and
``egs/cifar100/supcon/conf/supcon_r18.yaml`` (SupCon: two views through the backbone and one
head), built through :func:`vision_ssl.methods.build_method` exactly as the recipes do. Both see
the same ``--batch`` images of ``--size`` x ``--size`` with random class labels (SupCon encodes
2 x batch views, SelfCon-S batch views). ``supcon_s`` (SupCon with one view) is measured as well,
to separate what dropping the second view saves from what the exit costs.

One training step = ``compute_loss(views, labels)["loss"].backward()``, SGD (momentum 0.9,
weight decay 1e-4) ``step()`` and ``zero_grad()``. Every number is the median of ``--repeats``
timed steps after ``--warmup`` untimed ones, the methods interleaved within each repeat so that
drift hits all alike; ``torch.cuda.synchronize()`` brackets each timed step on GPU. With
``--amp`` the forward runs under ``torch.autocast`` (fp16 on CUDA, as the reference's AMP; bf16 on
CPU).

Peak memory of one step (after the warm-up, so momentum buffers exist):
CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``;
CPU: the peak of the torch profiler's memory timeline (``profile_memory=True``; parameters,
gradients, optimizer state, activations, temporaries: every tensor the step allocates).
``bytes`` is that peak; ``bytes_above_start`` subtracts what was allocated when the step began
(weights, momentum, data).

Output, one JSON line per measurement (progress on stderr):

``train_step_time``
    ``ratio`` = step time of ``method`` / step time of SupCon (the paper reports about 0.48 for
    SelfCon-S vs SupCon on ImageNet with ResNet-50); ``flop_ratio`` = the same quotient of the
    step's FLOPs (``torch.utils.flop_counter``, forward and backward) and ``ratio_of_limit`` =
    ratio / flop_ratio; ``flops`` / ``tflops_achieved`` per side.
``train_step_peak_memory``
    ``ratio`` = peak memory of ``method`` / SupCon's (paper: about 0.59); ``ratio_above_start``
    uses ``bytes_above_start``.
``parameters``
    ``ratio`` = trainable parameters of ``method`` / SupCon's (heads and sub-network included).

The SelfCon-S time and memory lines carry the issue-16 anchors: ``anchor`` (time 0.50, memory
0.60, from the paper's 0.48 / 0.59) and ``within_anchor`` (``ratio`` <= ``anchor``); for memory
the peak ``ratio`` is the one compared, ``ratio_above_start`` is context.

Examples::

    OMP_NUM_THREADS=1 python bench/selfcon_cost.py --quick      # CPU smoke run (batch 16)
    python bench/selfcon_cost.py --device cuda --batch 1024 --amp

This is a benchmark, not a test: it asserts nothing about the numbers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from _common import comparison_fields, count_flops, flop_fields

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vision_ssl.backbones import count_parameters  # noqa: E402
from vision_ssl.config import load_config  # noqa: E402
from vision_ssl.methods import build_method  # noqa: E402

#: issue 16's ceilings on SelfCon-S / SupCon (the paper reports about 0.48 time and 0.59 memory)
ANCHORS = {"train_step_time": 0.50, "train_step_peak_memory": 0.60}

CONFIGS = {
    "supcon": ("egs/cifar100/supcon/conf/supcon_r18.yaml", []),
    "selfcon_s": ("egs/cifar100/selfcon/conf/selfcon_s_r18.yaml", []),
    "supcon_s": ("egs/cifar100/supcon/conf/supcon_r18.yaml", ["data.num_views=1"]),
}


class Case:
    """One method's model, optimizer and fixed batch."""

    def __init__(self, name: str, args: argparse.Namespace) -> None:
        path, overrides = CONFIGS[name]
        self.name = name
        self.config = load_config(ROOT / path, overrides)
        torch.manual_seed(0)
        self.model = build_method(self.config).to(args.device).train()
        o = self.config.optim
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=o.lr, momentum=o.momentum,
                                         weight_decay=o.weight_decay)
        g = torch.Generator().manual_seed(1)
        self.views = [torch.randn(args.batch, 3, args.size, args.size, generator=g).to(args.device)
                      for _ in range(self.config.data.num_views)]
        self.labels = torch.randint(0, 100, (args.batch,), generator=g).to(args.device)
        self.device, self.amp = args.device, args.amp

    def step(self) -> None:
        dtype = torch.float16 if self.device == "cuda" else torch.bfloat16
        with torch.autocast(self.device, dtype=dtype, enabled=self.amp):
            loss = self.model.compute_loss(self.views, self.labels)["loss"]
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def timed(case: Case) -> float:
    if case.device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    case.step()
    if case.device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def peak_memory(case: Case) -> tuple[int, int]:
    """(peak bytes, peak bytes above the allocation at the start) of one step."""
    if case.device == "cuda":
        torch.cuda.synchronize()
        start = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        case.step()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        return peak, peak - start
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        case.step()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # deprecated in favour of a CUDA-only snapshot API; still the only CPU timeline
        warnings.simplefilter("ignore", FutureWarning)
        out = Path(tmp) / "timeline.json"
        prof.export_memory_timeline(str(out), device="cpu")
        _, sizes = json.loads(out.read_text())
    totals = [sum(s) for s in sizes]
    return max(totals), max(totals) - totals[0]


def anchor_fields(method: str, measure: str, ratio: float) -> dict:
    """``anchor`` and ``within_anchor`` for SelfCon-S's time and memory lines (nothing for the others)."""
    if method != "selfcon_s" or measure not in ANCHORS:
        return {}
    return {"anchor": ANCHORS[measure], "within_anchor": bool(ratio <= ANCHORS[measure])}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=64, help="images per step (SupCon encodes twice as many views)")
    parser.add_argument("--size", type=int, default=32, help="image side (CIFAR: 32)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--amp", action="store_true", help="autocast the forward (fp16 on CUDA, bf16 on CPU)")
    parser.add_argument("--quick", action="store_true", help="smoke run: batch 16, 3 repeats, 1 warm-up")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.repeats, args.warmup = 16, 3, 1
    cases = [Case(name, args) for name in CONFIGS]
    reference = cases[0]
    print(f"warm-up ({args.warmup} steps each)", file=sys.stderr)
    for _ in range(args.warmup):
        for case in cases:
            case.step()
    times: dict[str, list[float]] = {c.name: [] for c in cases}
    for r in range(args.repeats):
        for case in cases:
            times[case.name].append(timed(case))
        line = ", ".join(f"{k} {v[-1]:.3f} s" for k, v in times.items())
        print(f"repeat {r + 1}/{args.repeats}: {line}", file=sys.stderr)
    memory = {case.name: peak_memory(case) for case in cases}
    device = torch.device(args.device)
    flops = {case.name: count_flops(case.step, device) for case in cases}
    common = {"bench": "selfcon_cost", "reference": reference.name, "device": args.device, "batch": args.batch,
              "image_size": args.size, "backbone": reference.config.model.backbone, "amp": args.amp,
              "threads": torch.get_num_threads()}
    ref_time = statistics.median(times[reference.name])
    ref_peak, ref_above = memory[reference.name]
    ref_params = count_parameters(reference.model, trainable_only=True)
    how = "torch.cuda.max_memory_allocated" if args.device == "cuda" else "torch.profiler memory timeline"
    for case in cases[1:]:
        t = statistics.median(times[case.name])
        limit = comparison_fields(ref_time, t, flops[reference.name], flops[case.name])  # ratio = this / reference
        print(json.dumps({**common, "measure": "train_step_time", "method": case.name, "ratio": round(t / ref_time, 4),
                          "flop_ratio": limit["flop_ratio"], "ratio_of_limit": limit["ratio_of_limit"],
                          **anchor_fields(case.name, "train_step_time", t / ref_time),
                          "seconds": round(t, 4), "reference_seconds": round(ref_time, 4), "repeats": args.repeats,
                          **flop_fields(flops[case.name], t),
                          **flop_fields(flops[reference.name], ref_time, prefix="reference_")}))
        peak, above = memory[case.name]
        print(json.dumps({**common, "measure": "train_step_peak_memory", "method": case.name,
                          "ratio": round(peak / ref_peak, 4), "ratio_above_start": round(above / ref_above, 4),
                          **anchor_fields(case.name, "train_step_peak_memory", peak / ref_peak),
                          "bytes": peak, "reference_bytes": ref_peak, "bytes_above_start": above,
                          "reference_bytes_above_start": ref_above,
                          "how": how}))
        params = count_parameters(case.model, trainable_only=True)
        print(json.dumps({**common, "measure": "parameters", "method": case.name,
                          "ratio": round(params / ref_params, 4), "params": params, "reference_params": ref_params}))


if __name__ == "__main__":
    main()
