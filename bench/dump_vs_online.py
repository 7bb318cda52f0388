"""Benchmark the distillation step fed from a teacher feature dump against the step with the online teacher.

Setup: ``--batch`` generated utterances (16-bit FLAC at 16 kHz, lengths cycling through 100 %,
90 %, 85 % and 70 % of ``--seconds``, as in ``bench/distill_step.py``) in a temporary Kaldi data
dir; the HuBERT Base teacher (``load_teacher``, random weights); per student a
:class:`~audio_compress.tasks.distill.DistillationTask` built from its 960 h recipe config
(``egs/librispeech/<method>/conf/<student>_960h.yaml`` when there is one, else the defaults) with
AdamW and the warmup/linear-decay schedule of the recipes. For every student whose method can be
dump-fed, the project's own writer (:func:`audio_compress.dump.dump_teacher_features`) dumps
the teacher layers the method consumes for those utterances into the temporary folder, and
:class:`~audio_compress.dump.DumpedSpeechDataset` reads them back. Both steps see the same
waveforms: the online one as the ``WaveBatch`` of :class:`~audio_compress.data.dataset.SpeechDataset`,
the dump-fed one as the ``DumpBatch`` of the dump dataset (the targets differ: the dump runs each
utterance alone, see :mod:`audio_compress.dump`; the work per step does not).

A step is ``task.compute_loss(batch, train=True)["loss"].backward()``, gradient clipping at
``optim.grad_clip``, ``AdamW.step()``, the scheduler step and ``zero_grad()``, forwards under
bf16 autocast with ``--dtype bf16`` (the GPU default). Timings are medians of ``--repeats``
iterations after ``--warmup``; within an iteration the online step, the host-to-device copy of
the dump batch and the dump-fed step run one after the other (interleaved, so drift hits all
alike), with a device synchronisation around each region.

Output, one JSON line per measurement on stdout (progress on stderr):

``dump_fed_step`` (per student)
    ``ratio`` = online step seconds / dump-fed seconds (copy of the batch to the device + step):
    how much faster training runs when the teacher targets come from the dump (goal of issue 16:
    >= 1.3). ``flop_ratio`` = online step FLOPs / dump-fed step FLOPs
    (``torch.utils.flop_counter``; the dump-fed step has no teacher forward) and
    ``ratio_of_limit`` = ratio / flop_ratio (1.0: the saving is all the teacher's FLOPs).
    ``transfer_seconds`` is the copy alone (0 on CPU). On CPU, ``cpu_ratio`` is the same
    quotient of process CPU seconds (``cpu_seconds`` / ``reference_cpu_seconds``): with
    ``--threads 1`` on a machine shared with other work it is the steadier figure. A method that needs the online teacher
    (ARMHuBERT: the teacher runs on the student's masked input at every step) gets
    ``dump_fed: false`` with the method's own ``reason`` and null ratios instead of a timing.
``dump_read_throughput`` (per student with a dump)
    Reading the stored targets of the batch (``TeacherDump.get`` of every utterance, warm page
    cache: what the second epoch sees; a first read from a cold disk is bounded by the disk).
    ``ratio`` = audio-seconds of targets read per second; ``utterances_per_s``, ``mb_per_s``
    (fp16 bytes read); ``collate_*``: the whole dump-dataset batch (audio decode, targets,
    padding into one fp16 ``DumpBatch`` tensor) in the same units. ``read_share_of_step`` =
    collate seconds / dump-fed step seconds: loader processes needed per device to keep up.
    ``dump_write_seconds`` is the one-off cost of writing this dump (teacher, one utterance at a
    time) and ``dump_bytes`` its size.

Examples::

    OMP_NUM_THREADS=1 python bench/dump_vs_online.py --threads 1      # CPU, 4 x 10 s, fp32 (minutes)
    python bench/dump_vs_online.py --device cuda --batch 18 --seconds 15.6
    python bench/dump_vs_online.py --device cpu --teacher tiny_hubert --students tiny_star,tiny_arm,tiny_distil \\
        --batch 2 --seconds 1 --repeats 1 --warmup 0                      # wiring check

This is a benchmark, not a test: it asserts nothing about the numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

import torch
from _common import (
    Emitter,
    comparison_fields,
    count_flops,
    device_name,
    flop_fields,
    logger,
    median,
    rounded,
    time_regions,
    with_cpu_clock,
    write_speech_dir,
)
from distill_step import default_method, utterance_lengths

from audio_compress.data.dataset import SpeechDataset, collate_waveforms
from audio_compress.dump import DumpedSpeechDataset, dump_teacher_features
from audio_compress.frames import SAMPLE_RATE
from audio_compress.tasks.config import load_config
from audio_compress.tasks.distill import DistillationTask, adamw_warmup_linear_decay
from audio_compress.teachers import load_teacher

BENCH = "dump_vs_online"
ROOT = Path(__file__).resolve().parents[1]
log = logger(BENCH)


def recipe_config(student: str, method: str, seed: int):
    """The student's 960 h recipe config (defaults when the recipe has none), method and seed forced."""
    path = ROOT / "egs" / "librispeech" / method / "conf" / f"{student}_960h.yaml"
    overrides = [f"method={method}", f"student={student}", f"trainer.seed={seed}"]
    return load_config(path if path.is_file() else None, overrides), path if path.is_file() else None


class Trainer:
    """A task with its optimizer and schedule; :meth:`step` runs one training step on a batch."""

    def __init__(self, config, teacher, device: torch.device, autocast):
        with contextlib.redirect_stdout(sys.stderr):  # teacher initialisation reports on stdout
            self.task = DistillationTask(config, teacher=teacher).to(device)
        self.task.train()
        optim = adamw_warmup_linear_decay(self.task.student.named_parameters(), config.optim, 10**6)
        self.optimizer = optim["optimizer"]
        self.scheduler = optim["lr_scheduler"]["scheduler"]
        self.params = [p for p in self.task.student.parameters() if p.requires_grad]
        self.grad_clip = config.optim.grad_clip
        self.autocast = autocast
        self.last_loss = float("nan")

    def step(self, batch) -> None:
        with self.autocast():
            loss = self.task.compute_loss(batch, train=True)["loss"]
        loss.backward()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad()
        self.last_loss = float(loss.detach())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default=None,
                        help="autocast dtype (default: bf16 on CUDA, fp32 on CPU)")
    parser.add_argument("--batch", type=int, default=4, help="utterances per batch (default 4)")
    parser.add_argument("--seconds", type=float, default=10.0, help="longest utterance in seconds (default 10)")
    parser.add_argument("--students", default="starhubert,distilhubert,armhubert",
                        help="comma-separated students, each optionally name:method")
    parser.add_argument("--teacher", default="hubert_base", help="teacher architecture or path (default hubert_base)")
    parser.add_argument("--repeats", type=int, default=None, help="timed iterations (default 5 on GPU, 3 on CPU)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations first (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--no_flops", action="store_true", help="skip the FLOP counts")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


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

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()

    students = []
    for item in filter(None, (s.strip() for s in args.students.split(","))):
        name, _, method = item.partition(":")
        students.append((name, method or default_method(name)))

    with tempfile.TemporaryDirectory(prefix="dump_vs_online_") as tmp:
        tmp = Path(tmp)
        data_dir = write_speech_dir(tmp / "data", utterance_lengths(args.batch, args.seconds), seed=args.seed)
        speech = SpeechDataset(data_dir)
        online_batch = collate_waveforms([speech[i] for i in range(len(speech))]).to(device)
        audio_s = float(online_batch.lengths.sum()) / SAMPLE_RATE
        teacher = load_teacher(args.teacher, device=device, seed=args.seed)
        emit = Emitter(BENCH, {
            "device": device.type, "device_name": device_name(device), "dtype": dtype,
            "threads": torch.get_num_threads() if device.type == "cpu" else None, "batch_size": args.batch,
            "max_utt_s": args.seconds, "audio_s": round(audio_s, 3), "teacher": args.teacher,
            "warmup": args.warmup, "repeats": repeats,
        })
        log(f"device={device} dtype={dtype} batch={args.batch} x {args.seconds:g} s ({audio_s:g} s of audio) "
            f"repeats={repeats} torch={torch.__version__}")
        for name, method in students:
            bench_student(name, method, args, teacher, data_dir, online_batch, device, autocast, repeats, emit, tmp)
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()


def bench_student(name: str, method: str, args, teacher, data_dir: Path, online_batch, device, autocast,
                  repeats: int, emit, tmp: Path) -> None:
    """Time and count one student's online and dump-fed steps and the dump's reads; emit the lines."""
    config, recipe = recipe_config(name, method, args.seed)
    torch.manual_seed(args.seed)
    trainer = Trainer(config, teacher, device, autocast)
    common = {"student": name, "method": method, "recipe": str(recipe.relative_to(ROOT)) if recipe else None}
    reason = trainer.task.method.dump_refusal()
    if reason is not None:
        log(f"{name} ({method}): cannot be dump-fed: {reason}")
        emit(**common, what="dump_fed_step", dump_fed=False, reason=reason, ratio=None, flop_ratio=None,
             ratio_of_limit=None)
        return
    layers = trainer.task.method.teacher_layers()
    log(f"{name} ({method}): dumping teacher layers {layers}")
    dump_dir = tmp / f"dump_{name}"
    write = time_regions(lambda mark: (dump(teacher, data_dir, dump_dir, layers, device), mark("write")), 0, 1, device)
    dataset = DumpedSpeechDataset(data_dir, dump_dir)
    items = list(range(len(dataset)))
    dump_batch = dataset.collate([dataset[i] for i in items])

    def steps(mark) -> None:
        trainer.step(online_batch)
        mark("online")
        batch = dump_batch.to(device)
        mark("transfer")
        trainer.step(batch)
        mark("dump_fed")

    log(f"{name}: timing the online and the dump-fed step")
    clocked, cpu = with_cpu_clock(steps, args.warmup)
    times = time_regions(clocked, args.warmup, repeats, device)
    fed_all = [t + c for t, c in zip(times["transfer"], times["dump_fed"])]
    online_s, fed_s = median(times["online"]), median(fed_all)
    fields = {"ratio": round(online_s / fed_s, 4), "flop_ratio": None, "ratio_of_limit": None}
    if device.type == "cpu":
        cpu_s = cpu()
        cpu_fed = median([t + c for t, c in zip(cpu_s["transfer"], cpu_s["dump_fed"])])
        fields.update(cpu_ratio=round(median(cpu_s["online"]) / cpu_fed, 4), cpu_seconds=round(cpu_fed, 5),
                      reference_cpu_seconds=round(median(cpu_s["online"]), 5))
    if not args.no_flops:
        log(f"{name}: counting FLOPs")
        online_flops = count_flops(lambda: trainer.step(online_batch), device)
        fed_flops = count_flops(lambda: trainer.step(dump_batch.to(device)), device)
        fields = {**fields, **comparison_fields(fed_s, online_s, fed_flops, online_flops),
                  **flop_fields(fed_flops, fed_s), **flop_fields(online_flops, online_s, prefix="reference_")}
    emit(**common, what="dump_fed_step", dump_fed=True, **fields, seconds=round(fed_s, 5),
         reference="online teacher step", reference_seconds=round(online_s, 5),
         transfer_seconds=round(median(times["transfer"]), 5), layers=layers, loss=trainer.last_loss,
         seconds_all=rounded(fed_all), reference_seconds_all=rounded(times["online"]))

    log(f"{name}: timing reads of the dump")
    dump_reader = dataset.dump
    utts = dataset.utt_ids

    def reads(mark) -> None:
        for utt in utts:
            dump_reader.get(utt, as_tensor=True)
        mark("targets")
        dataset.collate([dataset[i] for i in items])
        mark("collate")

    reads_t = time_regions(reads, 1, max(repeats, 3), device)
    target_s, collate_s = median(reads_t["targets"]), median(reads_t["collate"])
    frames = sum(dump_reader.num_frames(u) for u in utts)
    nbytes = frames * len(layers) * dump_reader.hidden_size * 2
    target_audio_s = float(online_batch.lengths.sum()) / SAMPLE_RATE
    emit(**common, what="dump_read_throughput", ratio=round(target_audio_s / target_s, 2),
         unit="audio-seconds of targets per second", seconds=round(target_s, 6),
         reference="audio seconds of the batch", reference_seconds=round(target_audio_s, 3),
         utterances_per_s=round(len(utts) / target_s, 2), mb_per_s=round(nbytes / target_s / 1e6, 1),
         collate_seconds=round(collate_s, 6), collate_audio_s_per_s=round(target_audio_s / collate_s, 2),
         collate_utterances_per_s=round(len(utts) / collate_s, 2),
         collate_mb_per_s=round(nbytes / collate_s / 1e6, 1), read_share_of_step=round(collate_s / fed_s, 4),
         frames=frames,
         layers=len(layers), bytes_read=nbytes, dump_bytes=sum(f.stat().st_size for f in dump_dir.glob("*.bin")),
         dump_write_seconds=round(write["write"][0], 3), page_cache="warm")


def dump(teacher, data_dir: Path, dump_dir: Path, layers: list[int], device: torch.device) -> None:
    """Write the dump with the project's writer (its reports go to stderr: stdout carries JSON)."""
    with contextlib.redirect_stdout(sys.stderr):
        dump_teacher_features(teacher, data_dir, dump_dir, layers, device=device, progress=False)


if __name__ == "__main__":
    main()
