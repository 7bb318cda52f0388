#!/usr/bin/env bash
# Template recipe for SimCore (coreset sampling from an open set for self-supervised pretraining
# on a small target set, arXiv 2303.11101). Called by egs/<corpus>/simcore/run.sh, which sets the
# target, the open set and the configs and forwards the user's flags ("$@"). Run `run.sh --help`.
#
# Stages:
#   0: data        mini recipes build the digits target + open set; full recipes check the roots
#   1: target SSL  SSL on the target alone: the retrieval encoder and the "target only" baseline
#   2: features    l2-normalised backbone features of target and open set (sharded .npy)
#   3: coreset     SimCore (k-means + greedy rounds, stopping rule) and the random baseline
#   4: coreset SSL SSL from scratch on target + each coreset, epochs recomputed from its size
#   5: linear      linear evaluation on the target of every run, and of the trivial baselines
#                  (--baselines: random-init network, raw pixels) -> exp/<tag>/baselines
#   6: results     table: target only / each sampler, baselines and chance -> exp/<tag>/results.md
set -euo pipefail

_cmdline="$0 $*"  # not an option: names starting with _ are skipped by --help

# ---- options (each line: name=default  # description; listed by --help) ----
stage=0                      # first stage to run
stop_stage=100               # last stage to run
conf=conf/simclr_r50.yaml    # SSL + linear-evaluation config (all runs)
coreset_conf=conf/coreset.yaml  # coreset sampling config (k, stopping rule, budget, epoch rule)
tag=""                       # experiment name (default: the target's name)
exp_root=exp                 # experiments go to <exp_root>/<tag>
target=cub                   # target dataset name (reference 3.4: aircraft cars pets cub dogs flowers ...)
target_root=""               # target ImageFolder root with train/ and test/ (default: SIMCORE_DATA/<target>)
open_dataset=imagenet        # open-set dataset: imagenet | imagefolder | filelist
open_root=""                 # open-set root (default for imagenet: IMAGENET from db.sh)
open_split=train             # open-set split (filelist: the list file name)
samplers="simcore random"    # coreset samplers; random draws as many images as simcore
seed=0                       # pretraining / linear-evaluation seed
make_mini=false              # stage 0 builds the mini digits target and open set in data_dir (mini recipes)
data_dir=data                # mini: where stage 0 writes digits, target/ and openset.tsv
mini_target_classes="3 5 8"  # mini: digit classes of the target
mini_per_class=40            # mini: target train images per class
omniglot=""                  # mini: folder with the Omniglot zips to add to the open set (empty: none)
feature_args=""              # extra flags of "vision_ssl.bin.simcore features", e.g. "--batch_size 512 --num_workers 8"
coreset_args=""              # extra coreset config overrides, e.g. "k=50 patience=10"
pretrain_args=""             # extra config overrides for pretraining, e.g. "data.batch_size=256"
linear_args=""               # extra config overrides for linear evaluation, e.g. "linear.epochs=10"
baselines=""  # trivial baselines probed on the target in stage 5 (empty: none; the mini twins pass "random_init pixels")
cmd_backend=local            # how training stages start: local | slurm | torchrun (see recipes/cmd.sh)
resume=auto                  # training: auto (continue from last.ckpt, a changed config is refused) | never (afresh, old run archived) | force (continue, change recorded)
ngpu=1                       # processes per node for cmd_backend=torchrun (trainer.devices must match)
nnodes=1                     # nodes for cmd_backend=torchrun
. "$(dirname "${BASH_SOURCE[0]}")/parse_options.sh"

. "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

for f in "${conf}" "${coreset_conf}"; do
  if [ ! -f "${f}" ]; then
    echo "ERROR: config '${f}' not found (see conf/ of this recipe)" >&2
    exit 1
  fi
done
[ -n "${tag}" ] || tag="${target}"
expdir="${exp_root}/${tag}"
make_expdir

if "${make_mini}"; then
  target_root="${data_dir}/target"
  open_dataset=filelist
  open_root="${data_dir}"
  open_split=openset.tsv
fi
[ -n "${target_root}" ] || target_root="${SIMCORE_DATA:+${SIMCORE_DATA}/${target}}"
if [ -z "${open_root}" ] && [ "${open_dataset}" = imagenet ]; then
  open_root="${IMAGENET}"
fi
featdir="${expdir}/features"

log "${_cmdline}"
log "recipe: conf=${conf} target=${target_root} open set=${open_dataset}:${open_root}/${open_split} expdir=${expdir}"

sets() {  # --set flags for each KEY=VALUE argument
  local kv
  for kv in "$@"; do printf '%s\n' --set "${kv}"; done
}

data_stage() {
  if "${make_mini}"; then
    # shellcheck disable=SC2086
    python -m vision_ssl.bin.simcore prepare --out "${data_dir}" --target_classes ${mini_target_classes} \
      --per_class "${mini_per_class}" --omniglot "${omniglot}"
  else
    require_root SIMCORE_DATA target_root "${target_root}" \
      "Build the ImageFolder tree <SIMCORE_DATA>/${target}/{train,test}/<class>/<image> of the target (reference \
3.4; openssl-simcore's data/*_image_folder_generator.py, with the 100-class 'variant' labels for aircraft)."
    if [ "${open_dataset}" = imagenet ]; then
      require_root IMAGENET open_root "${open_root}" \
        "Download ILSVRC2012 (image-net.org) so that <root>/train/<wnid>/*.JPEG exists."
    fi
    python -m vision_ssl.bin.prepare_data --dataset imagefolder --root "${target_root}" --splits train test
    python -m vision_ssl.bin.prepare_data --dataset "${open_dataset}" --root "${open_root}" --splits "${open_split}"
  fi
}

_check=false  # true: the training commands below run their dry run (the preflight check)

pretrain() {  # pretrain RUN OVERRIDES...
  local run="$1" args
  shift
  mapfile -t args < <(sets "$@" ${pretrain_args})
  args=(--config "${conf}" --expdir "${expdir}/${run}" --seeds "${seed}" --resume "${resume}" "${args[@]}")
  if "${_check}"; then
    python -m vision_ssl.bin.pretrain "${args[@]}" --check
  else
    launch "${ngpu}" "${nnodes}" vision_ssl.bin.pretrain "${args[@]}"
  fi
}

target_stage() {
  pretrain target_only "data.dataset=imagefolder" "data.root=${target_root}"
}

features_stage() {
  local ckpt="${expdir}/target_only/seed${seed}/checkpoints/last.ckpt"
  # shellcheck disable=SC2086
  python -m vision_ssl.bin.simcore features --checkpoint "${ckpt}" --dataset imagefolder --root "${target_root}" \
    --split train --out "${featdir}/target" ${feature_args}
  # shellcheck disable=SC2086
  python -m vision_ssl.bin.simcore features --checkpoint "${ckpt}" --dataset "${open_dataset}" \
    --root "${open_root}" --split "${open_split}" --out "${featdir}/openset" ${feature_args}
}

coreset_stage() {
  local sampler args
  for sampler in ${samplers}; do
    mapfile -t args < <(sets "method=${sampler}" ${coreset_args})
    if [ "${sampler}" = random ] && [[ " ${samplers} " == *" simcore "* ]]; then
      args+=(--match "${expdir}/coreset/simcore")
    fi
    python -m vision_ssl.bin.simcore select --config "${coreset_conf}" --target "${featdir}/target" \
      --open_set "${featdir}/openset" --out "${expdir}/coreset/${sampler}" "${args[@]}"
  done
}

coreset_ssl_stage() {
  local sampler epochs
  for sampler in ${samplers}; do
    epochs=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["epochs"])' \
      "${expdir}/coreset/${sampler}/summary.json")
    log "${sampler}: SSL from scratch on target + coreset for ${epochs} epochs"
    # the kNN monitor needs labelled test images, which a coreset list has not
    pretrain "${sampler}" "data.dataset=filelist" "data.root=${expdir}/coreset/${sampler}" \
      "data.train_split=train.tsv" "trainer.max_epochs=${epochs}" "trainer.knn_every_n_epochs=0"
  done
}

linear_probe() {  # linear_probe ARGS...: one linear evaluation (its dry run when _check=true)
  local args
  mapfile -t args < <(sets "data.dataset=imagefolder" "data.root=${target_root}" ${linear_args})
  args=(--config "${conf}" --seeds "${seed}" --resume "${resume}" "$@" "${args[@]}")
  if "${_check}"; then
    python -m vision_ssl.bin.linear_eval "${args[@]}" --check
  else
    launch "${ngpu}" "${nnodes}" vision_ssl.bin.linear_eval "${args[@]}"
  fi
}

linear_stage() {
  local run kind
  for run in target_only ${samplers}; do linear_probe --expdir "${expdir}/${run}"; done
  for kind in ${baselines}; do linear_probe --expdir "${expdir}" --baseline "${kind}"; done
}

results_stage() {
  local labels=()
  if "${make_mini}"; then
    # shellcheck disable=SC2206
    labels=(--target_labels ${mini_target_classes})
  fi
  # shellcheck disable=SC2086
  python -m vision_ssl.bin.simcore report --expdir "${expdir}" --runs target_only ${samplers} "${labels[@]}"
}

# preflight: before stage ${stage} does any work, check the configs and inputs of every stage that will run
preflight() {
  local sampler
  _check=true
  if want_stage 1; then
    target_stage
  elif want_stage 2; then
    require_input "${expdir}/target_only/seed${seed}/checkpoints/last.ckpt" 1 "the target-only SSL model"
  fi
  if ! want_stage 2 && want_stage 3; then
    require_input "${featdir}/openset" 2 "the open-set features"
  fi
  for sampler in ${samplers}; do
    if ! want_stage 3 && want_stage 4; then
      require_input "${expdir}/coreset/${sampler}/summary.json" 3 "the ${sampler} coreset"
    fi
    if ! want_stage 4 && want_stage 5; then
      require_input "${expdir}/${sampler}/seed${seed}/checkpoints/last.ckpt" 4 "the ${sampler} SSL model"
    fi
  done
  if want_stage 5; then
    linear_stage
  fi
}
check_stages preflight

run_stage 0 "data: target ${target_root}, open set ${open_dataset} at ${open_root}" data_stage
run_stage 1 "SSL on the target alone -> ${expdir}/target_only" target_stage
run_stage 2 "features of target and open set -> ${featdir}" features_stage
run_stage 3 "coresets (${samplers}) -> ${expdir}/coreset" coreset_stage
run_stage 4 "SSL from scratch on target + coreset (${samplers})" coreset_ssl_stage
run_stage 5 "linear evaluation on the target" linear_stage
run_stage 6 "results -> ${expdir}/results.md" results_stage

finish_recipe
