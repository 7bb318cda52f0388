#!/usr/bin/env bash
# Template recipe for episodic few-shot studies of a source-pretrained backbone: the update-method
# study (LP / FT / partial / augmentation / TTA) and ReFine, on cross-domain target datasets.
# Called by egs/<corpus>/<method>/run.sh, which sets the study table and targets and forwards the
# user's flags ("$@"). Run `run.sh --help` for options.
#
# Stages:
#   0: data        mini recipes export digit classes as source and target; full recipes check the target roots
#   1: source      pretrain the source model with --pretrain_conf (mini), or check --checkpoint / --weights
#   2: study       every (update method, shots) cell of the table on every target, and the trivial
#                  baselines (--baselines) with the table's linear probe (resumable)
#   3: results     Markdown / JSON table (baselines and chance below the methods) and a plot of
#                  accuracy vs shots -> exp/<tag>/results.md
set -euo pipefail

_cmdline="$0 $*"  # not an option: names starting with _ are skipped by --help

# ---- options (each line: name=default  # description; listed by --help) ----
stage=0                  # first stage to run
stop_stage=100           # last stage to run
conf=conf/study.yaml     # study table: episode settings and the update methods (rows) x shots
tag=""                   # experiment name (default: the table's file name)
exp_root=exp             # experiments go to <exp_root>/<tag>
targets="eurosat"        # target datasets (names of vision_ssl.data), one study each
target_roots=""          # their roots, same order (default: the db.sh variable of each, e.g. EUROSAT)
checkpoint=""            # source model: checkpoint of vision_ssl.bin.pretrain (e.g. ResNet-10 SL on miniImageNet)
backbone=""              # or a plain state dict: its backbone name (e.g. resnet10) ...
weights=""               # ... and its file
pretrain_conf=""         # stage 1 pretrains the source model with this config (mini recipes)
make_digits=false        # stage 0 exports scikit-learn's digits as source and target (mini recipes)
data_root=data/digits    # digits export folder: <data_root>/source and <data_root>/target
digits_size=16           # side of the exported digit images
source_classes="0 1 2 3 4"  # digit classes of the mini source
target_classes="5 6 7 8 9"  # digit classes of the mini target
study_args=""            # extra table overrides, e.g. "episodes=100 defaults.epochs=50"
baselines=""  # trivial baselines evaluated like the source model (empty: none; the mini twins pass "random_init pixels")
device=auto              # auto | cpu | cuda
. "$(dirname "${BASH_SOURCE[0]}")/parse_options.sh"

. "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

init_expdir

read -r -a target_list <<< "${targets}"
if "${make_digits}"; then
  read -r -a root_list <<< "${target_roots:-${data_root}/target/train}"
else
  read -r -a root_list <<< "${target_roots}"
fi
own_source=false  # true: stage 1 trains the source model (no --checkpoint / --weights given)
if [ -z "${checkpoint}" ] && [ -z "${weights}" ] && [ -n "${pretrain_conf}" ]; then
  checkpoint="${expdir}/source/seed0/checkpoints/last.ckpt"
  own_source=true
fi

# root_of INDEX NAME: the root of target INDEX (explicit, else its db.sh variable)
root_of() {
  if [ -n "${root_list[$1]:-}" ]; then
    echo "${root_list[$1]}"
  else
    local var="${2^^}"
    echo "${!var:-}"
  fi
}

log "${_cmdline}"
log "recipe: conf=${conf} targets='${targets}' checkpoint=${checkpoint:-${weights}} expdir=${expdir}"

data_stage() {
  local i t root var
  if "${make_digits}"; then
    # shellcheck disable=SC2086
    python -m vision_ssl.bin.prepare_data --dataset imagefolder --root "${data_root}/source" \
      --make_digits true --size "${digits_size}" --digits_classes ${source_classes}
    # shellcheck disable=SC2086
    python -m vision_ssl.bin.prepare_data --dataset imagefolder --root "${data_root}/target" \
      --make_digits true --size "${digits_size}" --digits_classes ${target_classes}
  fi
  for i in "${!target_list[@]}"; do
    t="${target_list[$i]}"
    root="$(root_of "${i}" "${t}")"
    var="${t^^}"
    if [ -z "${root_list[$i]:-}" ] && grep -q "^${var}=" "${recipe_dir}/db.sh"; then
      require_root "${var}" target_roots "${root}" "$(grep "^${var}=" "${recipe_dir}/db.sh" | sed 's/^[^#]*# *//')"
    fi
    python -m vision_ssl.bin.prepare_data --dataset "${t}" --root "${root}"
  done
}

source_args() {
  if [ -n "${checkpoint}" ]; then
    printf '%s\n' --checkpoint "${checkpoint}"
  else
    printf '%s\n' --backbone "${backbone}" --weights "${weights}"
  fi
}

source_stage() {
  if "${own_source}"; then
    python -m vision_ssl.bin.pretrain --config "${pretrain_conf}" --expdir "${expdir}/source" --seeds 0 \
      --set "data.root=${data_root}/source"
  fi
  require_source " or --backbone NAME --weights FILE (a plain state dict)"
}

study_stage() {
  local i t kv args=()
  for kv in ${study_args}; do args+=(--set "${kv}"); done
  mapfile -t src < <(source_args)
  for i in "${!target_list[@]}"; do
    t="${target_list[$i]}"
    # shellcheck disable=SC2086
    python -m vision_ssl.bin.fsl_study run --table "${conf}" "${src[@]}" --dataset "${t}" \
      --root "$(root_of "${i}" "${t}")" --outdir "${expdir}/${t}" --device "${device}" --baselines ${baselines} \
      "${args[@]}"
  done
}

results_stage() {
  local t dirs=()
  for t in "${target_list[@]}"; do dirs+=("${expdir}/${t}"); done
  python -m vision_ssl.bin.fsl_study report --outdirs "${dirs[@]}" --out "${expdir}/results.md" \
    --plot "${expdir}/accuracy_vs_shots.png"
}

# preflight: before stage ${stage} does any work, check the configs and inputs of every stage that will run
preflight() {
  if want_stage 1 && "${own_source}"; then
    python -m vision_ssl.bin.pretrain --config "${pretrain_conf}" --expdir "${expdir}/source" --seeds 0 \
      --set "data.root=${data_root}/source" --check
  elif { want_stage 1 || want_stage 2; } && ! "${own_source}"; then
    require_source " or --backbone NAME --weights FILE (a plain state dict)"
  elif want_stage 2; then
    require_input "${checkpoint}" 1 "the source model"
  fi
}
check_stages preflight

run_stage 0 "data: targets ${targets}" data_stage
run_stage 1 "source model ${checkpoint:-${weights}}" source_stage
run_stage 2 "study ${conf} on ${targets} -> ${expdir}/<target>/summary.json" study_stage
run_stage 3 "results -> ${expdir}/results.md, ${expdir}/accuracy_vs_shots.png" results_stage

finish_recipe
