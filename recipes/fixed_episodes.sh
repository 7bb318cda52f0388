#!/usr/bin/env bash
# Template recipe for few-shot evaluation on fixed episodes: Omniglot's 20 official one-shot runs
# (--omniglot) or any episode list (--episodes_file, format in vision_ssl/fewshot/fixed_episodes.py).
# Called by egs/<corpus>/<method>/run.sh, which sets the update table and the source model and
# forwards the user's flags ("$@"). Run `run.sh --help` for options.
#
# Stages:
#   0: data        Omniglot: unpack the runs (and the background set when stage 1 pretrains) into data_root
#   1: source      pretrain the source model on the background set with --pretrain_conf, or check --checkpoint / --weights
#   2: eval        every update row of --updates and the trivial baselines (--baselines, the raw-pixel
#                  nearest neighbour) on every episode
#   3: results     Markdown / JSON table -> exp/<tag>/results.md
set -euo pipefail

_cmdline="$0 $*"  # not an option: names starting with _ are skipped by --help

# ---- options (each line: name=default  # description; listed by --help) ----
stage=0                  # first stage to run
stop_stage=100           # last stage to run
conf=conf/lp.yaml        # update table: study YAML whose 'defaults' and 'updates' rows define the methods
tag=""                   # experiment name (default: the table's file name)
exp_root=exp             # experiments go to <exp_root>/<tag>
updates="lp"             # rows of the table to evaluate
omniglot=""              # Omniglot python/ folder with all_runs.zip or all_runs/ (default: OMNIGLOT from the environment or db.sh)
episodes_file=""         # or: an episode list (TSV: episode role path label) instead of the Omniglot runs
background=""            # Omniglot background set that stage 1 pretrains on, e.g. images_background_small1
data_root=data/omniglot  # stage 0 writes <data_root>/runs and <data_root>/background here
checkpoint=""            # source model: checkpoint of vision_ssl.bin.pretrain ...
backbone=""              # or a plain state dict: its backbone name (e.g. resnet10) ...
weights=""               # ... and its file
pretrain_conf=""         # stage 1 pretrains the source model on the background set with this config
pixel_nn=true            # add the raw-pixel Euclidean nearest-neighbour baseline row (pixel_nn)
baselines=""  # trivial baselines evaluated with the table's lp row (empty: none; the mini twins pass "random_init pixels")
image_size=""            # evaluation side for the model and the baseline (default: the checkpoint's pretraining size)
seed=0                   # seed of the per-episode fine-tuning (head init, batch order)
eval_args=""             # extra update overrides, e.g. "epochs=50 lr=0.05"
device=auto              # auto | cpu | cuda
. "$(dirname "${BASH_SOURCE[0]}")/parse_options.sh"

. "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

init_expdir

omniglot="${omniglot:-${OMNIGLOT:-}}"
own_source=false  # true: stage 1 trains the source model (no --checkpoint / --weights given)
if [ -z "${checkpoint}" ] && [ -z "${weights}" ] && [ -n "${pretrain_conf}" ]; then
  checkpoint="${expdir}/source/seed0/checkpoints/last.ckpt"
  own_source=true
fi
if [ -n "${episodes_file}" ]; then
  name="$(basename "${episodes_file}")"
  name="${name%.*}"
else
  name=omniglot
fi

log "${_cmdline}"
log "recipe: conf=${conf} updates='${updates}' omniglot=${omniglot} episodes_file=${episodes_file}" \
  "checkpoint=${checkpoint:-${weights}} expdir=${expdir}"

# require_episodes: fail unless exactly one episode source is given and it exists (the Omniglot
# folder when stage 0 runs, else the runs stage 0 unpacked)
require_episodes() {
  if [ -n "${episodes_file}" ] && [ -n "${omniglot}" ]; then
    echo "ERROR: give either --episodes_file or --omniglot (OMNIGLOT), not both." >&2
    return 1
  fi
  if [ -n "${episodes_file}" ]; then
    [ -f "${episodes_file}" ] || { echo "ERROR: --episodes_file '${episodes_file}' not found." >&2; return 1; }
    if "${own_source}"; then
      echo "ERROR: --pretrain_conf pretrains on an Omniglot background set (--omniglot, --background);" \
        "with --episodes_file pass --checkpoint or --backbone/--weights." >&2
      return 1
    fi
    return 0
  fi
  if ! want_stage 0; then
    require_input "${data_root}/runs" 0 "the unpacked Omniglot runs"
    return 0
  fi
  if [ -z "${omniglot}" ] || { [ ! -f "${omniglot}/all_runs.zip" ] && [ ! -d "${omniglot}/all_runs" ]; }; then
    echo "ERROR: the Omniglot one-shot runs were not found (omniglot='${omniglot}')." >&2
    echo "       Download all_runs.zip (and images_background_small1.zip) from the python/ folder of" \
      "https://github.com/brendenlake/omniglot into one folder." >&2
    echo "       Set OMNIGLOT=<folder> in recipes/db.sh (or the environment), or pass --omniglot <folder>" \
      "(or --episodes_file FILE for other fixed episodes)." >&2
    return 1
  fi
  if "${own_source}" && [ -z "${background}" ]; then
    echo "ERROR: --pretrain_conf needs --background (e.g. images_background_small1) to pretrain on." >&2
    return 1
  fi
}

data_stage() {
  if [ -n "${omniglot}" ]; then
    local bg=""
    if "${own_source}"; then bg="${background}"; fi
    python -m vision_ssl.fewshot.omniglot --omniglot "${omniglot}" --out "${data_root}" --background "${bg}"
  else
    echo "episodes: ${episodes_file}"
  fi
}

source_stage() {
  if "${own_source}"; then
    python -m vision_ssl.bin.pretrain --config "${pretrain_conf}" --expdir "${expdir}/source" --seeds 0 \
      --set "data.root=${data_root}/background"
  fi
  require_source ", --backbone NAME --weights FILE (a plain state dict) or --pretrain_conf with --omniglot and --background"
}

eval_stage() {
  local kv args=()
  for kv in ${eval_args}; do args+=(--set "${kv}"); done
  if [ -n "${checkpoint}" ]; then
    args+=(--checkpoint "${checkpoint}")
  else
    args+=(--backbone "${backbone}" --weights "${weights}")
  fi
  if [ -n "${episodes_file}" ]; then
    args+=(--episodes_file "${episodes_file}")
  else
    args+=(--omniglot_runs "${data_root}/runs")
  fi
  if "${pixel_nn}"; then args+=(--pixel_nn); fi
  # shellcheck disable=SC2206
  if [ -n "${baselines}" ]; then args+=(--baselines ${baselines}); fi
  if [ -n "${image_size}" ]; then args+=(--image_size "${image_size}"); fi
  # shellcheck disable=SC2086
  python -m vision_ssl.bin.fewshot_eval --table "${conf}" --update ${updates} --seed "${seed}" \
    --device "${device}" --out "${expdir}/${name}/summary.json" "${args[@]}"
}

results_stage() {
  python -m vision_ssl.bin.fsl_study report --outdirs "${expdir}/${name}" --out "${expdir}/results.md"
}

# preflight: before stage ${stage} does any work, check the configs and inputs of every stage that will run
preflight() {
  if want_stage 0 || want_stage 2; then
    require_episodes
  fi
  if want_stage 1 && "${own_source}"; then
    python -m vision_ssl.bin.pretrain --config "${pretrain_conf}" --expdir "${expdir}/source" --seeds 0 \
      --set "data.root=${data_root}/background" --check
  elif { want_stage 1 || want_stage 2; } && ! "${own_source}"; then
    require_source ", --backbone NAME --weights FILE (a plain state dict) or --pretrain_conf with --omniglot and --background"
  elif want_stage 2; then
    require_input "${checkpoint}" 1 "the source model"
  fi
  if want_stage 3 && ! want_stage 2; then
    require_input "${expdir}/${name}/summary.json" 2 "the evaluation result"
  fi
}
check_stages preflight

run_stage 0 "data: ${episodes_file:-Omniglot runs from ${omniglot}} -> ${data_root}" data_stage
run_stage 1 "source model ${checkpoint:-${weights}}" source_stage
run_stage 2 "eval: ${updates} (pixel_nn: ${pixel_nn}) on ${name} -> ${expdir}/${name}/summary.json" eval_stage
run_stage 3 "results -> ${expdir}/results.md" results_stage

finish_recipe
