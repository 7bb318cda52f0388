#!/usr/bin/env bash
# Template recipe for DiffBlender: multimodal conditioning networks trained on a frozen
# text-to-image diffusion model (diffusers Stable Diffusion layout). Called by
# egs/<corpus>/diffblender/run.sh, which sets corpus options and forwards the user's flags ("$@").
# Run `run.sh --help` for options.
#
# Stages:
#   0: data        check the roots; parse annotations, cache palettes / style embeddings, preview grid
#   1: base        mini recipes only: train the tiny base (VAE, text encoder, UNet) on the shapes
#   2: train       the adapter on the frozen base (Lightning; resumes from last.ckpt when re-run)
#   3: sample      evaluation images for each condition set of --sample_sets (+ condition grids)
#   4: evaluate    FID / CLIP score / box alignment per condition set -> exp/<tag>/results.md
set -euo pipefail

_cmdline="$0 $*"  # not an option: names starting with _ are skipped by --help

# ---- options (each line: name=default  # description; listed by --help) ----
stage=0                  # first stage to run
stop_stage=100           # last stage to run
conf=conf/diffblender.yaml  # experiment config (YAML: base, data, adapter, train, trainer, sample)
tag=""                   # experiment name (default: the config's file name)
exp_root=exp             # experiments go to <exp_root>/<tag>
data_root=""             # COCO root (default: COCO from db.sh); unused by the synthetic shapes
base=""                  # frozen base: diffusers SD folder or hub id (default: STABLE_DIFFUSION from db.sh)
make_base=false          # stage 1 trains a tiny base into <expdir>/base (mini recipes)
base_args=""             # extra options of "vision_ssl.bin.diffblender base", e.g. "--steps 300"
train_args=""            # extra config overrides for training, e.g. "trainer.max_steps=1000 data.batch_size=4"
sample_args=""           # extra config overrides for sampling, e.g. "sample.num_inference_steps=25"
sample_sets="all none"   # condition sets to sample and score: all | none | modality names joined by '+'
num_eval=64              # evaluation images per condition set
fid_features=inception   # inception (published protocol, needs torch-fidelity) | random (offline proxy)
fid_inception_weights="" # local FID Inception weights (pt_inception-2015-12-05-6726825d.pth; "": $COMPACT_SSL_FID_INCEPTION or torch hub's cache)
clip_model=""            # local CLIPModel folder for the CLIP score ("": skipped)
detections=""            # detector boxes on the samples of the first set (JSON; "": skipped)
cmd_backend=local        # how training starts: local | slurm | torchrun (see recipes/cmd.sh)
resume=auto              # training: auto (continue from last.ckpt, a changed config is refused) | never (afresh, old run archived) | force (continue, change recorded)
ngpu=1                   # processes per node for cmd_backend=torchrun (trainer.devices must match)
nnodes=1                 # nodes for cmd_backend=torchrun
. "$(dirname "${BASH_SOURCE[0]}")/parse_options.sh"

. "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

init_expdir
dataset="$(python -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["data"]["dataset"])' "${conf}")"
[ -n "${data_root}" ] || data_root="${COCO}"
if "${make_base}"; then
  base="${expdir}/base"
elif [ -z "${base}" ]; then
  base="${STABLE_DIFFUSION}"
fi

log "${_cmdline}"
log "recipe: conf=${conf} dataset=${dataset} base=${base} expdir=${expdir}"

# config overrides common to every stage (those set), then the stage's own (--set k=v lines)
overrides() {
  local kv
  printf '%s\n' --set "data.cache_dir=${expdir}/cache"
  [ -z "${base}" ] || printf '%s\n' --set "base=${base}"
  [ -z "${data_root}" ] || printf '%s\n' --set "data.root=${data_root}"
  for kv in $1; do printf '%s\n' --set "${kv}"; done
}

data_stage() {
  if [ "${dataset}" = coco ]; then
    require_root COCO data_root "${data_root}" "Download COCO 2017 (train2017.zip, val2017.zip and annotations_trainval2017.zip from cocodataset.org) and unzip them so that <root>/train2017/, <root>/val2017/ and <root>/annotations/ exist."
  fi
  local args
  mapfile -t args < <(overrides "")
  python -m vision_ssl.bin.diffblender prepare --config "${conf}" --preview "${expdir}/data_preview.png" "${args[@]}"
}

base_stage() {
  # shellcheck disable=SC2086
  python -m vision_ssl.bin.diffblender base --out "${base}" ${base_args}
}

train_stage() {
  local args
  mapfile -t args < <(overrides "${train_args}")
  launch "${ngpu}" "${nnodes}" vision_ssl.bin.diffblender train --config "${conf}" --expdir "${expdir}/train" \
    --resume "${resume}" "${args[@]}"
}

sample_stage() {
  local set args
  mapfile -t args < <(overrides "${sample_args}")
  for set in ${sample_sets}; do
    python -m vision_ssl.bin.diffblender sample --config "${conf}" --adapter "${expdir}/train/adapter.safetensors" \
      --out "${expdir}/samples/${set}" --num "${num_eval}" --modalities "${set//+/ }" "${args[@]}"
  done
}

eval_stage() {
  local set dirs=()
  for set in ${sample_sets}; do dirs+=("${expdir}/samples/${set}"); done
  local weights=()
  if [ -n "${fid_inception_weights}" ]; then weights=(--fid_inception_weights "${fid_inception_weights}"); fi
  python -m vision_ssl.bin.diffblender eval --samples "${dirs[@]}" --fid_features "${fid_features}" "${weights[@]}" \
    --clip_model "${clip_model}" --detections "${detections}" --table "${expdir}/results.md"
}

# preflight: before stage ${stage} does any work, check the configs and inputs of every stage that will run
preflight() {
  local args set
  if [ -z "${base}" ] && { want_stage 2 || want_stage 3; }; then
    echo "ERROR: no base model: pass --base <diffusers Stable Diffusion v1.4 folder or hub id>, or set STABLE_DIFFUSION in recipes/db.sh" >&2
    return 1
  fi
  if "${make_base}" && ! want_stage 1 && { want_stage 2 || want_stage 3; }; then
    require_input "${base}" 1 "the tiny frozen base"
  fi
  if want_stage 2; then
    mapfile -t args < <(overrides "${train_args}")
    python -m vision_ssl.bin.diffblender train --config "${conf}" --expdir "${expdir}/train" --resume "${resume}" \
      "${args[@]}" --check
  elif want_stage 3; then
    require_input "${expdir}/train/adapter.safetensors" 2 "the trained adapter"
  fi
  if want_stage 4 && [ "${fid_features}" = inception ]; then
    # the Inception weights are never downloaded: a missing file must stop the run before training and sampling
    python - "${fid_inception_weights}" <<'PY'
import sys
from vision_ssl.diffblender.metrics import fid_weights_path
try:
    fid_weights_path(sys.argv[1] or None)
except FileNotFoundError as err:
    sys.exit(f"ERROR: {err} (recipe: --fid_inception_weights PATH, or --fid_features random for the offline proxy)")
PY
  fi
  if ! want_stage 3 && want_stage 4; then
    for set in ${sample_sets}; do require_input "${expdir}/samples/${set}" 3 "the samples of condition set ${set}"; done
  fi
}
check_stages preflight

run_stage 0 "data: ${dataset} (cache ${expdir}/cache, preview ${expdir}/data_preview.png)" data_stage
if "${make_base}"; then
  run_stage 1 "tiny frozen base -> ${base}" base_stage
fi
run_stage 2 "adapter training on the frozen base -> ${expdir}/train/adapter.safetensors" train_stage
run_stage 3 "sampling (${sample_sets}) -> ${expdir}/samples" sample_stage
run_stage 4 "evaluation -> ${expdir}/results.md" eval_stage

finish_recipe
