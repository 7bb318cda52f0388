"""Markdown summary of a ``bench/gpu_suite.sh`` run from its JSON lines.

Reads ``results.jsonl`` (one JSON object per line, as every ``bench/*.py`` prints) and writes
``summary.md``: per student and ``torch.compile`` setting the training step time, MFU against
the device's dense bf16 peak, peak memory, audio-hours trained per GPU-hour and the projected
single-GPU wall time of the 960 h recipe (``egs/librispeech/<method>/conf/<student>_960h.yaml``:
``max_epochs`` passes over 960 h, or ``max_steps`` optimizer steps of ``accumulate_grad_batches``
batches); then inference speed-ups with their FLOP ratios; the dump-fed vs online step with the
dump's read throughput; the speech loader's rates and the loader workers a GPU needs; where the
Patch-Mix CL step's cost goes; and every other line as a table row (with its anchor, if any).

Usage: ``python bench/suite_summary.py RESULTS.jsonl SUMMARY.md``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from compact_ssl.io import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
LIBRISPEECH_HOURS = 960.0


def recipe_budget(method: str, student: str) -> dict | None:
    """``max_epochs`` / ``max_steps`` / ``accumulate_grad_batches`` of the student's 960 h recipe, if there is one."""
    path = ROOT / "egs" / "librispeech" / method / "conf" / f"{student}_960h.yaml"
    if not path.is_file():
        return None
    trainer = (yaml.safe_load(path.read_text()) or {}).get("trainer", {})
    return {"path": str(path.relative_to(ROOT)), "max_epochs": trainer.get("max_epochs"),
            "max_steps": trainer.get("max_steps"), "accumulate": trainer.get("accumulate_grad_batches", 1)}


def projected_hours(throughput: float, step_s: float, budget: dict | None) -> float | None:
    """Single-GPU hours of the recipe at ``throughput`` audio-seconds per second (``step_s`` per batch)."""
    if budget is None:
        return None
    if budget["max_steps"]:
        return budget["max_steps"] * budget["accumulate"] * step_s / 3600
    if budget["max_epochs"]:
        return budget["max_epochs"] * LIBRISPEECH_HOURS / throughput
    return None


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def summarize(records: list[dict]) -> str:
    """The markdown text for the records of one suite run."""
    distill = [r for r in records if r.get("bench") == "distill_step"]
    lines = ["# GPU benchmark suite", ""]
    if distill:
        first = distill[0]
        lines += [f"Device: {first.get('device_name')} ({first.get('device')}), dtype {first.get('dtype')}.", ""]
    by_key: dict[tuple, dict] = {}
    for r in distill:
        by_key.setdefault((r["student"], r["method"], r.get("compile", False), r["batch_size"], r["max_utt_s"]),
                          {})[r["what"]] = r
    rows = []
    for (student, method, compiled, batch, seconds), parts in by_key.items():
        step = parts.get("train_step_vs_parts", {})
        tput = parts.get("train_audio_throughput", {})
        tflops = parts.get("train_tflops", {})
        throughput = tput.get("ratio")
        hours = (projected_hours(throughput, tput["seconds"], recipe_budget(method, student))
                 if throughput else None)
        rows.append([student, method, "on" if compiled else "off", f"{batch} x {seconds:g} s", step.get("seconds"),
                     step.get("ratio"), tflops.get("tflops_achieved"), tflops.get("ratio"),
                     tflops.get("step_peak_mem_gib"), throughput, hours])
    if rows:
        lines += ["## Distillation training step", ""]
        lines += _table(["student", "method", "compile", "batch", "step s", "step / parts", "TFLOP/s", "MFU",
                         "peak GiB", "audio-h per GPU-h", "960 h recipe, GPU-h"], rows)
        lines += ["", "audio-h per GPU-h = valid audio seconds per step / step seconds. The recipe projection uses "
                  "one GPU at this batch shape (`max_epochs` x 960 h / throughput, or `max_steps` x accumulation x "
                  "step time).", ""]
    inference = [r for r in distill if r["what"] == "inference_speedup"]
    if inference:
        lines += ["## Student inference vs teacher", ""]
        lines += _table(["student", "compile", "speed-up", "FLOP ratio", "ratio of limit", "student TFLOP/s"],
                        [[r["student"], "on" if r.get("compile") else "off", r.get("ratio"), r.get("flop_ratio"),
                          r.get("ratio_of_limit"), r.get("student_tflops_achieved")] for r in inference])
        lines.append("")
    lines += _dump_section(records) + _loader_section(records) + _breakdown_section(records)
    own = {"distill_step", "dump_vs_online", "speech_loader"}
    others = [r for r in records if r.get("bench") not in own and r.get("what") != "patchmix_cl_cost_breakdown"]
    if others:
        lines += ["## Other benchmarks", ""]
        lines += _table(["bench", "what", "method", "ratio", "flop_ratio", "seconds", "reference_seconds", "anchor"],
                        [[r.get("bench"), r.get("what") or r.get("measure"), r.get("method"), r.get("ratio"),
                          r.get("flop_ratio"), r.get("seconds"), r.get("reference_seconds"), _anchor(r)]
                         for r in others])
        lines.append("")
    return "\n".join(lines)


def _anchor(record: dict) -> str | None:
    """``<= 0.5 (met)`` for a line with an anchor, else None."""
    if record.get("anchor") is None:
        return None
    return f"<= {record['anchor']:g} ({'met' if record.get('within_anchor') else 'missed'})"


def _dump_section(records: list[dict]) -> list[str]:
    steps = [r for r in records if r.get("bench") == "dump_vs_online" and r.get("what") == "dump_fed_step"]
    if not steps:
        return []
    reads = {r["student"]: r for r in records if r.get("bench") == "dump_vs_online"
             and r.get("what") == "dump_read_throughput"}
    rows = []
    for r in steps:
        read = reads.get(r["student"], {})
        rows.append([r["student"], r["method"], f"{r.get('batch_size')} x {r.get('max_utt_s'):g} s",
                     r.get("reference_seconds"), r.get("seconds"), r.get("ratio"), r.get("flop_ratio"),
                     r.get("ratio_of_limit"), read.get("ratio"), read.get("mb_per_s"), read.get("read_share_of_step")]
                    if r.get("dump_fed") else [r["student"], r["method"], f"not dump-fed: {r.get('reason')}"]
                    + [None] * 8)
    return ["## Dump-fed vs online teacher step", ""] + _table(
        ["student", "method", "batch", "online s", "dump-fed s", "speed-up", "FLOP ratio", "ratio of limit",
         "targets read, audio-s/s", "read MB/s", "batch read / step"], rows) + [
        "", "speed-up = online step / (copy of the dump batch to the device + dump-fed step); reads from a warm "
        "page cache; batch read / step = loading one dump batch (audio + targets) / the dump-fed step, i.e. loader "
        "processes needed per device.", ""]


def _loader_section(records: list[dict]) -> list[str]:
    loader = [r for r in records if r.get("bench") == "speech_loader"]
    if not loader:
        return []
    rates = [[r.get("stage") or ("pipeline, resampled" if r.get("resampled") else "pipeline"), r.get("sample_rate"),
              r.get("ratio"), r.get("wall_audio_s_per_s")] for r in loader if r["what"] != "workers_needed"]
    workers = [[r.get("student"), "on" if r.get("compile") else "off", r.get("source"), r.get("sample_rate"),
                r.get("step_audio_s_per_s"), r.get("loader_audio_s_per_core_s"), r.get("ratio")]
               for r in loader if r["what"] == "workers_needed"]
    lines = ["## Speech loader (one worker = one core)", ""]
    lines += _table(["stage", "file rate Hz", "audio-s per core-s", "audio-s per wall-s"], rates)
    if workers:
        lines += ["", "Loader workers one GPU needs at the step speed:", ""]
        lines += _table(["student", "compile", "step speed from", "file rate Hz", "step audio-s/s",
                         "worker audio-s/s", "workers"], workers)
    return lines + [""]


def _breakdown_section(records: list[dict]) -> list[str]:
    found = [r for r in records if r.get("what") == "patchmix_cl_cost_breakdown"]
    if not found:
        return []
    r = found[0]
    rows = [[name, part["seconds"], part["flops"] / 1e9, part.get("share_of_extra")] for name, part in r["parts"].items()]
    return ["## Patch-Mix CL step: where the cost goes", ""] + _table(
        ["part", "seconds", "GFLOP", "share of the extra time"], rows) + [
        "", f"All parts / CE part: {_fmt(r['ratio'])} in time, {_fmt(r['flop_ratio'])} in FLOPs; the patch swap "
        f"alone takes {_fmt(r['mix_apply_seconds'])} s.", ""]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="JSON lines written by the suite")
    parser.add_argument("summary", type=Path, help="markdown file to write")
    args = parser.parse_args(argv)
    if not args.results.is_file():
        raise SystemExit(f"{args.results}: no such results file; run bench/gpu_suite.sh first")
    records = []
    for number, line in enumerate(args.results.read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise SystemExit(f"{args.results}:{number}: not a JSON line ({error}); was stdout mixed with logs?") from None
    atomic_write_text(args.summary, summarize(records))
    print(f"wrote {args.summary} ({len(records)} results)")


if __name__ == "__main__":
    main()
