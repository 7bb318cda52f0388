#!/usr/bin/env bash
# Template recipe for image self-supervised pretraining + linear evaluation (SelfCon, SupCon,
# MixCo over MoCo v2 / SimCLR). Called by egs/<corpus>/<method>/run.sh, which sets corpus- and
# method-specific options and forwards the user's flags ("$@"). Run `run.sh --help` for options.
#
# Stages:
#   0: data        mini recipes export scikit-learn's digits; full recipes check the dataset root
#   1: pretrain    Lightning, one run per seed (resumes from the last checkpoint when re-run)
#   2: linear      linear evaluation of the frozen encoder, one run per seed, and of the trivial
#                  baselines (--baselines: random-init network, raw pixels) -> exp/<tag>/baselines
#   3: results     mean and std over seeds, baselines and chance -> exp/<tag>/results.md
set -euo pipefail

_cmdline="$0 $*"  # not an option: names starting with _ are skipped by --help

# ---- options (each line: name=default  # description; listed by --help) ----
stage=0                  # first stage to run
stop_stage=100           # last stage to run
conf=conf/selfcon.yaml   # experiment config (YAML: pretraining and linear evaluation)
tag=""                   # experiment name (default: the config's file name)
exp_root=exp             # experiments go to <exp_root>/<tag>
dataset=cifar100         # cifar10 | cifar100 | tinyimagenet | imagenet | imagefolder (overrides data.dataset)
data_root=""             # dataset root (default: CIFAR10 / CIFAR100 / TINYIMAGENET / IMAGENET from db.sh)
make_digits=false        # stage 0 exports scikit-learn's digits into data_root (mini recipes)
digits_size=16           # side of the exported digit images
seeds="0 1 2"            # seeds: stages 1-2 run each, stage 3 reports mean and std
pretrain_args=""         # extra config overrides for pretraining, e.g. "trainer.max_epochs=10 data.batch_size=256"
linear_args=""           # extra config overrides for linear evaluation, e.g. "linear.epochs=10"
baselines=""  # trivial baselines probed like the method in stage 2 (empty: none; the mini twins pass "random_init pixels")
cmd_backend=local        # how training stages start: local | slurm | torchrun (see recipes/cmd.sh)
resume=auto              # training: auto (continue from last.ckpt, a changed config is refused) | never (afresh, old run archived) | force (continue, change recorded)
ngpu=1                   # processes per node for cmd_backend=torchrun (trainer.devices must match)
nnodes=1                 # nodes for cmd_backend=torchrun
. "$(dirname "${BASH_SOURCE[0]}")/parse_options.sh"

. "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

init_expdir

case "${dataset}" in
  cifar10)      dbvar=CIFAR10;      download_hint="Download the CIFAR-10 python version (cifar-10-python.tar.gz, https://www.cs.toronto.edu/~kriz/cifar.html) and unpack it so that <root>/cifar-10-batches-py/ exists." ;;
  cifar100)     dbvar=CIFAR100;     download_hint="Download the CIFAR-100 python version (cifar-100-python.tar.gz, https://www.cs.toronto.edu/~kriz/cifar.html) and unpack it so that <root>/cifar-100-python/ exists." ;;
  tinyimagenet) dbvar=TINYIMAGENET; download_hint="Download tiny-imagenet-200.zip (http://cs231n.stanford.edu/) and unzip it so that <root>/tiny-imagenet-200/wnids.txt exists." ;;
  imagenet)     dbvar=IMAGENET;     download_hint="Download ILSVRC2012 (image-net.org) so that <root>/train/<wnid>/*.JPEG and <root>/val/<wnid>/*.JPEG exist (val re-organised into class folders)." ;;
  imagefolder)  dbvar=""; download_hint="" ;;  # no db.sh variable: --data_root, checked in Python
  *) echo "$0: unknown dataset '${dataset}' (cifar10 | cifar100 | tinyimagenet | imagenet | imagefolder)" >&2; exit 1 ;;
esac
if [ -z "${data_root}" ] && [ -n "${dbvar}" ]; then
  data_root="${!dbvar}"
fi

log "${_cmdline}"
log "recipe: conf=${conf} dataset=${dataset} data_root=${data_root} seeds='${seeds}' expdir=${expdir}"

# config overrides common to stages 1 and 2, then the stage's own
overrides() {
  local kv
  printf '%s\n' --set "data.dataset=${dataset}" --set "data.root=${data_root}"
  for kv in $1; do printf '%s\n' --set "${kv}"; done
}

data_stage() {
  if "${make_digits}"; then
    python -m vision_ssl.bin.prepare_data --dataset "${dataset}" --root "${data_root}" \
      --make_digits true --size "${digits_size}"
  else
    if [ -n "${dbvar}" ]; then
      require_root "${dbvar}" data_root "${data_root}" "${download_hint}"
    fi
    python -m vision_ssl.bin.prepare_data --dataset "${dataset}" --root "${data_root}"
  fi
}

pretrain_stage() {
  local args
  mapfile -t args < <(overrides "${pretrain_args}")
  # shellcheck disable=SC2086
  launch "${ngpu}" "${nnodes}" vision_ssl.bin.pretrain --config "${conf}" --expdir "${expdir}" \
    --seeds ${seeds} --resume "${resume}" "${args[@]}"
}

linear_stage() {
  local args
  mapfile -t args < <(overrides "${linear_args}")
  # shellcheck disable=SC2086
  launch "${ngpu}" "${nnodes}" vision_ssl.bin.linear_eval --config "${conf}" --expdir "${expdir}" \
    --seeds ${seeds} --resume "${resume}" "${args[@]}"
  local kind
  for kind in ${baselines}; do
    # shellcheck disable=SC2086
    launch "${ngpu}" "${nnodes}" vision_ssl.bin.linear_eval --config "${conf}" --expdir "${expdir}" \
      --seeds ${seeds} --resume "${resume}" --baseline "${kind}" "${args[@]}"
  done
}

results_stage() {
  python -m vision_ssl.bin.results linear --expdir "${expdir}" --out "${expdir}/results.md"
}

# preflight: before stage ${stage} does any work, check the configs and inputs of every stage that will run
preflight() {
  local args seed
  if want_stage 1; then
    mapfile -t args < <(overrides "${pretrain_args}")
    # shellcheck disable=SC2086
    python -m vision_ssl.bin.pretrain --config "${conf}" --expdir "${expdir}" --seeds ${seeds} --resume "${resume}" \
      "${args[@]}" --check
  elif want_stage 2; then
    for seed in ${seeds}; do require_input "${expdir}/seed${seed}/checkpoints/last.ckpt" 1 "the pretrained model"; done
  fi
  if want_stage 2; then
    mapfile -t args < <(overrides "${linear_args}")
    # shellcheck disable=SC2086
    python -m vision_ssl.bin.linear_eval --config "${conf}" --expdir "${expdir}" --seeds ${seeds} --resume "${resume}" \
      "${args[@]}" --check
  fi
}
check_stages preflight

run_stage 0 "data: ${dataset} at ${data_root}" data_stage
run_stage 1 "pretraining (${conf}, seeds ${seeds}) -> ${expdir}/seed*/checkpoints" pretrain_stage
run_stage 2 "linear evaluation -> ${expdir}/seed*/linear/result.json" linear_stage
run_stage 3 "results over seeds -> ${expdir}/results.md" results_stage

finish_recipe
