#!/usr/bin/env bash
# One-command benchmark suite for a GPU (issue 16): every bench/*.py on the device with bf16
# autocast, the distillation step with torch.compile off and on, at the published batch sizes
# (STaR / ARMHuBERT 18 utterances, DistilHuBERT 24, of 15.6 s; ICBHI 8 cycles; SelfCon 1024
# images), then the dump-fed vs online distillation step (18 x 15.6 s) and the speech loader
# (per core, on the host CPU; workers per GPU from the step speeds measured before it).
# Budget: about 8 minutes on one H100 / H200. Writes results.jsonl (one JSON line per
# measurement) and summary.md (MFU against the device's dense bf16 peak, peak memory,
# audio-hours per GPU-hour per student, projected wall time of the 960 h recipes, dump-fed
# speed-up, loader workers per GPU).
#
# Usage: bench/gpu_suite.sh [--dry-run] [--out DIR]
#   --dry-run  CPU, tiny models and sizes, one repeat: checks the wiring in seconds (no compile).
#   --out DIR  where results go (default exp/bench/gpu_suite_<UTC time>).
# Environment: PYTHON (default: python).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
python="${PYTHON:-python}"
dry=0
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --out) [ $# -ge 2 ] || { echo "gpu_suite.sh: --out needs a folder" >&2; exit 2; }; out="$2"; shift ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_suite.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
out="${out:-$root/exp/bench/gpu_suite_$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
results="$out/results.jsonl"
: > "$results"
cd "$root"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"

if [ "$dry" = 0 ] && ! "$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_suite.sh: no CUDA device visible; run with --dry-run for the CPU wiring check" >&2
  exit 1
fi

run() {  # run NAME SCRIPT ARGS...: append the script's JSON lines, log its wall time
  local name="$1" start=$SECONDS
  shift
  echo "[gpu_suite] $name: $*" >&2
  "$python" "$@" >> "$results"
  echo "[gpu_suite] $name: done in $((SECONDS - start)) s" >&2
}

if [ "$dry" = 1 ]; then
  tiny=(--device cpu --teacher tiny_hubert --batch 2 --seconds 1 --repeats 1 --warmup 0)
  run distill "$here/distill_step.py" "${tiny[@]}" --students tiny_star,tiny_arm,tiny_distil
  run icbhi "$here/icbhi_step.py" --device cpu --set model.arch=ast_tiny --set model.proj_dim=64 --batch 2 --repeats 1 --warmup 0 --cycles 4 --threads 1
  run selfcon "$here/selfcon_cost.py" --device cpu --batch 16 --size 16 --repeats 1 --warmup 0
  run simcore "$here/simcore_select.py" --sizes 3000 --dim 16 --k 8 --target 50 --chunk 1000 --workloads stop
  run dump_vs_online "$here/dump_vs_online.py" "${tiny[@]}" --students tiny_star,tiny_arm,tiny_distil
  run speech_loader "$here/speech_loader.py" --utterances 6 --min_seconds 1 --max_seconds 3 --resample_from 8000 \
    --repeats 1 --max_batch_samples 100000 --max_batch_size 4 --step_json "$results"
else
  gpu=(--device cuda --dtype bf16 --repeats 5 --warmup 2)
  run distill_star_arm "$here/distill_step.py" "${gpu[@]}" --students starhubert,armhubert --batch 18 --seconds 15.6
  run distill_distil "$here/distill_step.py" "${gpu[@]}" --students distilhubert --batch 24 --seconds 15.6
  run distill_star_arm_compiled "$here/distill_step.py" "${gpu[@]}" --students starhubert,armhubert --batch 18 \
    --seconds 15.6 --compile
  run distill_distil_compiled "$here/distill_step.py" "${gpu[@]}" --students distilhubert --batch 24 --seconds 15.6 \
    --compile
  run icbhi "$here/icbhi_step.py" --device cuda --batch 8 --repeats 5
  run selfcon "$here/selfcon_cost.py" --device cuda --batch 1024 --amp
  run simcore "$here/simcore_select.py" --quick
  run dump_vs_online "$here/dump_vs_online.py" "${gpu[@]}" --students starhubert,distilhubert,armhubert --batch 18 \
    --seconds 15.6
  # the step speeds measured above decide the loader workers a GPU needs
  run speech_loader "$here/speech_loader.py" --resample_from 44100 --step_json "$results"
fi

"$python" "$here/suite_summary.py" "$results" "$out/summary.md" >&2
echo "$out"
