#!/usr/bin/env bash
# Template recipe for the cross-domain few-shot pretraining schemes of "Understanding
# Cross-Domain Few-Shot Learning Based on Domain Similarity and Few-Shot Difficulty":
# SL on the labeled source, SSL (SimCLR / BYOL) on the unlabeled target, MSL (both at once), and
# the two-stage schemes (SL first, then SSL or MSL from its weights). Called by
# egs/cdfsl/<scheme>/run.sh (one scheme) and egs/mini_digits/cdfsl/run.sh (all of them).
# Run `run.sh --help` for options.
#
# Stages:
#   0: data        mini recipes export digits (source / target classes); full ones check every root
#   1: pretrain    SL once into sl_expdir (sl and two-stage schemes); the other schemes: one model
#                  per target in <exp_root>/<scheme>/<target>
#   2: few-shot    episodic evaluation of each model on its target's labeled 80 %, then once per
#                  target the trivial baselines (--baselines) on the same episodes -> <exp_root>/baselines
#   3: results     table over schemes x targets x shots, baselines and chance -> <exp_root>/<tag>/results.md
set -euo pipefail

_cmdline="$0 $*"

# ---- options (each line: name=default  # description; listed by --help) ----
stage=0                  # first stage to run
stop_stage=100           # last stage to run
schemes=sl               # one or more of: sl ssl_simclr ssl_byol msl_simclr msl_byol twostage_simclr twostage_msl_simclr
tag=""                   # folder of the logs and the table, <exp_root>/<tag> (default: the scheme, or "schemes")
conf_dir=../conf         # folder of sl.yaml, simclr.yaml, byol.yaml, msl_simclr.yaml, msl_byol.yaml
exp_root=exp             # models go to <exp_root>/<scheme>/<target>
sl_expdir=""             # SL model (trained there when missing; default <exp_root>/sl): shared by sl and two-stage
source=miniimagenet      # labeled source dataset (a name of vision_ssl.data.DATASETS)
source_root=""           # source root (default: MINIIMAGENET from db.sh)
source_split=train       # source split used for SL / MSL
targets="cropdisease eurosat isic chestx"  # target datasets (BSCD-FSL; also cub cars places plantae miniimagenet)
target_roots=""          # "name=path ..." per target (default: the upper-case db.sh variable, e.g. EUROSAT)
make_digits=false        # stage 0 exports scikit-learn's digits: source classes into source_root, target ones below
digits_size=16           # side of the exported digit images
digits_source="0 1 2 3 4"  # digit classes of the mini source
digits_target="5 6 7 8 9"  # digit classes of the mini target (exported to <digits_target_dir>/{train,test})
digits_target_dir=data/target  # where the mini target digits go (target root: <dir>/train)
seed=0                   # pretraining seed (episode seed: --seed in eval_args, default 0)
pretrain_args=""         # extra config overrides for every pretraining, e.g. "trainer.max_epochs=10"
shots="1 5"              # support images per class
n_way=5                  # classes per episode
episodes=600             # episodes per (model, shots)
update=lp                # update during the episodes: lp (linear probe) | ft (all parameters)
eval_args=""             # extra fewshot_eval options, e.g. "--queries 15 --set epochs=100"
baselines=""  # trivial baselines (architecture of the first scheme's model), same update (empty: none; the mini twins pass "random_init pixels")
cmd_backend=local        # how pretraining starts: local | slurm | torchrun (see recipes/cmd.sh)
resume=auto              # training: auto (continue from last.ckpt, a changed config is refused) | never (afresh, old run archived) | force (continue, change recorded)
ngpu=1                   # processes per node for cmd_backend=torchrun (trainer.devices must match)
nnodes=1                 # nodes for cmd_backend=torchrun
. "$(dirname "${BASH_SOURCE[0]}")/parse_options.sh"

. "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

# second-stage (or only) config of scheme $1; empty for sl
scheme_conf() {
  case "$1" in
    sl)                  echo "" ;;
    ssl_simclr)          echo simclr.yaml ;;
    ssl_byol)            echo byol.yaml ;;
    msl_simclr)          echo msl_simclr.yaml ;;
    msl_byol)            echo msl_byol.yaml ;;
    twostage_simclr)     echo simclr.yaml ;;
    twostage_msl_simclr) echo msl_simclr.yaml ;;
    *) return 1 ;;
  esac
}

needs_sl=false      # the SL model: sl and the two-stage schemes
needs_source=false  # the labeled source: the above and msl
for scheme in ${schemes}; do
  if ! conf="$(scheme_conf "${scheme}")"; then
    echo "$0: unknown scheme '${scheme}' (sl ssl_simclr ssl_byol msl_simclr msl_byol twostage_simclr" \
         "twostage_msl_simclr)" >&2
    exit 1
  fi
  for f in sl.yaml ${conf}; do
    if [ ! -f "${conf_dir}/${f}" ]; then
      echo "ERROR: config '${conf_dir}/${f}' not found (see conf/ of this recipe)" >&2
      exit 1
    fi
  done
  case "${scheme}" in sl|twostage_*) needs_sl=true; needs_source=true ;; msl_*) needs_source=true ;; esac
done

if [ -z "${tag}" ]; then
  if [ "$(echo ${schemes} | wc -w)" -eq 1 ]; then tag="${schemes// /}"; else tag=schemes; fi
fi
expdir="${exp_root}/${tag}"
[ -n "${sl_expdir}" ] || sl_expdir="${exp_root}/sl"
[ -n "${source_root}" ] || source_root="${MINIIMAGENET}"
sl_ckpt="${sl_expdir}/seed${seed}/checkpoints/last.ckpt"
make_expdir

# root of target $1: from --target_roots, else the db.sh variable of the upper-cased name
target_root() {
  local kv var="${1^^}"
  for kv in ${target_roots}; do
    if [ "${kv%%=*}" = "$1" ]; then echo "${kv#*=}"; return; fi
  done
  echo "${!var-}"
}

# checkpoint of scheme $1 evaluated on target $2
model_ckpt() {
  if [ "$1" = sl ]; then echo "${sl_ckpt}"; else echo "${exp_root}/$1/$2/seed${seed}/checkpoints/last.ckpt"; fi
}

log "${_cmdline}"
log "recipe: schemes='${schemes}' source=${source} at '${source_root}' targets='${targets}' expdir=${expdir}"

data_stage() {
  local t
  if "${make_digits}"; then
    # the exports also check the trees they wrote
    # shellcheck disable=SC2086
    python -m vision_ssl.bin.prepare_data --dataset imagefolder --root "${source_root}" --make_digits true \
      --size "${digits_size}" --digits_classes ${digits_source}
    # shellcheck disable=SC2086
    python -m vision_ssl.bin.prepare_data --dataset imagefolder --root "${digits_target_dir}" --make_digits true \
      --size "${digits_size}" --digits_classes ${digits_target}
  elif "${needs_source}"; then
    require_root MINIIMAGENET source_root "${source_root}" \
      "Download the ${source} source (see the comment of MINIIMAGENET in recipes/db.sh for the layout)."
    python -m vision_ssl.bin.prepare_data --dataset "${source}" --root "${source_root}" --splits "${source_split}"
  fi
  for t in ${targets}; do
    if ! "${make_digits}"; then
      require_root "${t^^}" target_roots "$(target_root "${t}")" \
        "Download the ${t} target (see the comment of ${t^^} in recipes/db.sh; or pass --target_roots \"${t}=<folder>\")."
    fi
    python -m vision_ssl.bin.prepare_data --dataset "${t}" --root "$(target_root "${t}")" --splits unlabeled labeled
  done
}

# pretrain CONF EXPDIR [key=value ...]: one pretraining run (skipped when already finished); with
# _pretrain_check=true, its dry run (the preflight check)
_pretrain_check=false
pretrain() {
  local conf="$1" dir="$2" kv args=()
  shift 2
  for kv in "$@" ${pretrain_args}; do args+=(--set "${kv}"); done
  args=(--config "${conf}" --expdir "${dir}" --seeds "${seed}" --resume "${resume}" "${args[@]}")
  if "${_pretrain_check}"; then
    python -m vision_ssl.bin.pretrain "${args[@]}" --check
  else
    launch "${ngpu}" "${nnodes}" vision_ssl.bin.pretrain "${args[@]}"
  fi
}

pretrain_stage() {
  local scheme conf t extra
  if "${needs_sl}"; then
    pretrain "${conf_dir}/sl.yaml" "${sl_expdir}" "data.dataset=${source}" "data.root=${source_root}" \
      "data.train_split=${source_split}"
  fi
  for scheme in ${schemes}; do
    conf="$(scheme_conf "${scheme}")"
    [ -n "${conf}" ] || continue
    extra=()
    case "${scheme}" in twostage_*) extra+=("cdfsl.init_from=${sl_ckpt}") ;; esac
    case "${scheme}" in *msl_*) extra+=("cdfsl.source_dataset=${source}" "cdfsl.source_root=${source_root}"
                                        "cdfsl.source_split=${source_split}") ;; esac
    for t in ${targets}; do
      pretrain "${conf_dir}/${conf}" "${exp_root}/${scheme}/${t}" "data.dataset=${t}" \
        "data.root=$(target_root "${t}")" "data.train_split=unlabeled" "${extra[@]}"
    done
  done
}

fewshot_stage() {
  local scheme t
  for scheme in ${schemes}; do
    for t in ${targets}; do
      # shellcheck disable=SC2086
      python -m vision_ssl.bin.fewshot_eval --checkpoint "$(model_ckpt "${scheme}" "${t}")" --dataset "${t}" \
        --root "$(target_root "${t}")" --split labeled --n_way "${n_way}" --shots ${shots} \
        --episodes "${episodes}" --update "${update}" ${eval_args} --out "${exp_root}/${scheme}/${t}/summary.json"
    done
  done
  [ -n "${baselines}" ] || return 0
  read -r -a scheme_list <<< "${schemes}"
  for t in ${targets}; do
    # shellcheck disable=SC2086
    python -m vision_ssl.bin.fewshot_eval --checkpoint "$(model_ckpt "${scheme_list[0]}" "${t}")" --dataset "${t}" \
      --root "$(target_root "${t}")" --split labeled --n_way "${n_way}" --shots ${shots} --episodes "${episodes}" \
      --baselines ${baselines} --baselines_only --baseline_update "${update}" ${eval_args} \
      --out "${exp_root}/baselines/${t}/summary.json"
  done
}

results_stage() {
  # shellcheck disable=SC2086
  python -m vision_ssl.bin.results cdfsl --exp_root "${exp_root}" --schemes ${schemes} --targets ${targets} \
    --out "${expdir}/results.md"
}

# preflight: before stage ${stage} does any work, check the configs and inputs of every stage that will run
preflight() {
  local scheme t
  if want_stage 1; then
    _pretrain_check=true
    pretrain_stage
  elif want_stage 2; then
    for scheme in ${schemes}; do
      for t in ${targets}; do require_input "$(model_ckpt "${scheme}" "${t}")" 1 "the ${scheme} model for ${t}"; done
    done
  fi
}
check_stages preflight

run_stage 0 "data: source ${source}, targets ${targets}" data_stage
run_stage 1 "pretraining (${schemes}) -> ${exp_root}/<scheme>/<target>" pretrain_stage
run_stage 2 "few-shot evaluation (${n_way}-way, shots ${shots}, ${episodes} episodes, ${update})" fewshot_stage
run_stage 3 "results over schemes x targets x shots -> ${expdir}/results.md" results_stage

finish_recipe
