"""Before/after of the student speed work in one run: a git revision's students and STaR loss against today's.

The "before" side is today's code with three modules taken from ``--rev`` (default ``710ff06^``,
the last revision before the issue 16 optimisations): ``audio_compress/models/transformer.py`` and
``audio_compress/models/cnn.py`` (the student is built with that revision's encoder and CNN, then
given the weights of today's student, so both compute the same function) and
``audio_compress/losses/star.py`` (STaR's loss during the "before" training step). The modules are
read with ``git show REV:path`` and executed under private names; nothing in the checkout changes.
The teacher is the same HuBERT Base object for both sides.

Every iteration times the teacher, the "after" and the "before" student back to back
(interleaved, so drift hits all three alike); figures are medians of ``--repeats`` iterations
after ``--warmup``. Output: one JSON line per measurement with a ``before`` and an ``after`` dict:

``inference_speedup`` (per student and batch size in ``--batches``, rows of ``--seconds`` cut as in
``distill_step.py``): ``ratio`` = teacher time / student time, ``flop_ratio`` = teacher FLOPs /
student FLOPs and ``ratio_of_limit`` = their quotient (1.0: as fast as the FLOPs allow).

``train_step_vs_parts`` (per student, batch ``--step_batch``; ``--step_batch 0`` skips it): the
full distillation step against the sum of its parts, as defined in ``distill_step.py``
(``ratio`` = step / parts, ``flop_ratio`` = step FLOPs / part FLOPs, ``ratio_of_limit``).

Example (21 minutes at one thread on the shared 2-core development machine)::

    OMP_NUM_THREADS=1 .venv/bin/python bench/before_after.py --threads 1 > before_after.jsonl

It needs a git checkout whose history holds ``--rev``; elsewhere it stops with a message.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import types
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from _common import Emitter, comparison_fields, count_flops, logger, median, time_regions
from distill_step import StudentBench, default_method, make_batch

import audio_compress.methods.star as star_method
import audio_compress.models.student as student_module
from audio_compress.teachers import load_teacher

BENCH = "before_after"
REPO = Path(__file__).resolve().parents[1]
log = logger(BENCH)


def _git(*args: str, problem: str) -> str:
    """``git -C REPO args``'s output; on failure stop with ``problem`` and git's own message."""
    try:
        result = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise SystemExit("before_after.py: the git command is not installed; it reads the old modules from git history") from None
    if result.returncode != 0:
        raise SystemExit(f"before_after.py: {problem} ({result.stderr.strip() or 'git ' + ' '.join(args)})")
    return result.stdout


def load_revision(rev: str) -> dict[str, types.ModuleType]:
    """The transformer, CNN and STaR loss modules of ``rev``, executed under private module names."""
    _git("rev-parse", "--is-inside-work-tree",
         problem=f"{REPO} is not a git checkout; run this from a clone of the repository with its history")
    _git("rev-parse", "--verify", f"{rev}^{{commit}}",
         problem=f"revision {rev!r} is not in this checkout's history; fetch it or pass another --rev")
    modules = {}
    for key, path, package in (("transformer", "audio_compress/models/transformer.py", "audio_compress.models"),
                               ("cnn", "audio_compress/models/cnn.py", "audio_compress.models"),
                               ("star", "audio_compress/losses/star.py", "audio_compress.losses")):
        name = f"_before_{key}"
        module = types.ModuleType(name)
        module.__package__ = package  # relative imports resolve against today's package
        module.__file__ = f"{rev}:{path}"
        sys.modules[name] = module
        source = _git("show", f"{rev}:{path}", problem=f"{path} does not exist at revision {rev!r}")
        exec(compile(source, module.__file__, "exec"), module.__dict__)
        modules[key] = module
    return modules


@contextmanager
def patched(module: types.ModuleType, **attributes):
    """Set module attributes for the duration of the block."""
    saved = {name: getattr(module, name) for name in attributes}
    for name, value in attributes.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


def build_pair(name: str, method: str, teacher, batch, old: dict, seed: int) -> tuple[StudentBench, StudentBench]:
    """Today's bench and the revision's, the latter holding the former's weights."""
    device = batch.wavs.device
    after = StudentBench(name, method, teacher, batch, device, nullcontext, seed)
    with patched(student_module, TransformerEncoder=old["transformer"].TransformerEncoder,
                 ConvFeatureExtractor=old["cnn"].ConvFeatureExtractor):
        before = StudentBench(name, method, teacher, batch, device, nullcontext, seed)
    before.student.load_state_dict(after.student.state_dict())
    return before, after


def sides(before: StudentBench, after: StudentBench, old: dict):
    """``(tag, bench, context)`` for both sides; the context swaps in the revision's STaR loss."""
    return (("after", after, nullcontext), ("before", before, lambda: patched(star_method, star_loss=old["star"].star_loss)))


def _best(seconds: list[float], reference_seconds: list[float], flop_ratio: float) -> dict:
    """Ratio of the fastest repeats (reference / this) and its quotient by the FLOP ratio: on a shared
    machine other jobs only ever add time, so minima scatter less than medians."""
    best = min(reference_seconds) / min(seconds)
    return {"best_ratio": round(best, 4), "best_ratio_of_limit": round(best / flop_ratio, 4)}


def inference(before: StudentBench, after: StudentBench, old: dict, warmup: int, repeats: int) -> dict:
    """Interleaved teacher / after / before inference times and FLOPs."""
    for bench in (before, after):
        bench.student.eval()

    def body(mark):
        after.teacher_forward()
        mark("teacher")
        for tag, bench, _ in sides(before, after, old):
            bench.student_inference()
            mark(tag)

    device = after.device
    times = time_regions(body, warmup, repeats, device)
    teacher_flops = count_flops(after.teacher_forward, device)
    fields = {}
    for tag, bench, _ in sides(before, after, old):
        flops = count_flops(bench.student_inference, device)
        fields[tag] = {**comparison_fields(median(times[tag]), median(times["teacher"]), flops, teacher_flops),
                       "seconds": round(median(times[tag]), 5), **_best(times[tag], times["teacher"], teacher_flops / flops)}
        bench.task.train()
    return {**fields, "teacher_seconds": round(median(times["teacher"]), 5)}


def step_vs_parts(before: StudentBench, after: StudentBench, old: dict, warmup: int, repeats: int) -> dict:
    """Interleaved training step and its parts for both sides, with their FLOP ratios."""
    parts = ("teacher_fwd", "student_fwd_bwd", "optimizer_step")

    def body(mark):
        for tag, bench, context in sides(before, after, old):
            with context():
                bench.train_step()
            mark(f"{tag}/step")
            for masked in (False, True)[:bench.teacher_forwards]:  # ARMHuBERT: clean + masked
                bench.teacher_forward(masked=masked)
                mark(f"{tag}/teacher_fwd")
            bench.student_forward_backward()
            mark(f"{tag}/student_fwd_bwd")
            bench.optimizer_step()
            mark(f"{tag}/optimizer_step")

    times = time_regions(body, warmup, repeats, after.device)
    fields = {}
    for tag, bench, context in sides(before, after, old):
        parts_all = [sum(times[f"{tag}/{p}"][i] for p in parts) for i in range(repeats)]
        step_s, parts_s = median(times[f"{tag}/step"]), median(parts_all)
        with context():
            step_flops, _ = bench.count_step_flops()
        part_flops = bench.count_part_flops()
        # comparison_fields(x, ref) gives ref / x: the parts play "x" so that ratio = step / parts
        fields[tag] = {**comparison_fields(parts_s, step_s, part_flops, step_flops),
                       "seconds": round(step_s, 5), "reference_seconds": round(parts_s, 5),
                       **_best(parts_all, times[f"{tag}/step"], step_flops / part_flops)}
    return fields


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rev", default="710ff06^", help="git revision of the 'before' modules (default 710ff06^)")
    parser.add_argument("--students", default="starhubert,armhubert", help="comma-separated students")
    parser.add_argument("--batches", default="1,4", help="inference batch sizes (default 1,4)")
    parser.add_argument("--step_batch", type=int, default=4, help="training-step batch size, 0 to skip (default 4)")
    parser.add_argument("--seconds", type=float, default=10.0, help="longest utterance in seconds (default 10)")
    parser.add_argument("--repeats", type=int, default=5, help="timed iterations (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations first (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    old = load_revision(args.rev)
    if args.threads:
        torch.set_num_threads(args.threads)
    teacher = load_teacher("hubert_base", device=torch.device("cpu"), seed=args.seed)
    emit = Emitter(BENCH, {"rev": args.rev, "device": "cpu", "dtype": "fp32", "threads": torch.get_num_threads(),
                           "max_utt_s": args.seconds, "warmup": args.warmup, "repeats": args.repeats})
    for name in filter(None, (s.strip() for s in args.students.split(","))):
        method = default_method(name)
        runs = [("inference_speedup", int(b)) for b in args.batches.split(",") if b.strip()]
        if args.step_batch:
            runs.append(("train_step_vs_parts", args.step_batch))
        for what, batch_size in runs:
            log(f"{name}: {what} at {batch_size} x {args.seconds:g} s")
            batch = make_batch(batch_size, args.seconds, args.seed)
            before, after = build_pair(name, method, teacher, batch, old, args.seed)
            measure = inference if what == "inference_speedup" else step_vs_parts
            emit(student=name, method=method, what=what, batch_size=batch_size,
                 **measure(before, after, old, args.warmup, args.repeats))
            before.close()
            after.close()


if __name__ == "__main__":
    main()
