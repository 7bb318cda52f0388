#!/usr/bin/env bash
# Template recipe for respiratory sound classification on ICBHI 2017 with AST
# (cross-entropy, Patch-Mix, Patch-Mix contrastive learning). Called by
# egs/<corpus>/<method>/run.sh, which sets corpus- and method-specific options and forwards
# the user's flags ("$@"). Run `run.sh --help` for options.
#
# Stages:
#   0: corpus      mini recipes synthesize their corpus; full recipes check $ICBHI
#   1: data prep   recordings + official split -> ${datadir}/{train,test}/cycles.tsv, counts printed
#   2: features    fbank cache of every cycle, keyed by the feature config (${dumpdir}/features)
#   3: training    every config in --confs, once per seed in --seeds (Lightning; resumes when re-run)
#   4: evaluation  best (paper protocol) and last checkpoints of every seed on the test set,
#                  confusion-matrix PNGs, results table (mean +- std over seeds) in ${expdir}/results.{md,json}
#   5: real samples  only with --real_samples: a few real ICBHI recordings through prepare -> cache ->
#                  evaluate with the last checkpoint of every method's first seed, into
#                  ${expdir}/real_samples/<method>/ (a smoke test of the real format, not a score)
set -euo pipefail

_cmdline="$0 $*"  # not an option: names starting with _ are skipped by --help

# ---- options (each line: name=default  # description; listed by --help) ----
stage=0                  # first stage to run
stop_stage=100           # last stage to run
tag=ast_patchmix         # experiment name: results go to <exp_root>/<tag>
exp_root=exp             # experiments go to <exp_root>/<tag>
datadir=data             # cycle manifests
dumpdir=dump             # feature caches go to <dumpdir>/features
corpus_root=""           # ICBHI root (default: $ICBHI from db.sh)
split_file=""            # official split file (default: found under corpus_root)
missing_audio=fail       # split entries without audio: fail | skip (listed in <datadir>/counts.json)
bad_cycles=fail          # annotated cycles that cannot be cut (empty, beyond the recording): fail | skip (listed in counts.json)
make_corpus=false        # stage 0 synthesizes the mini corpus into corpus_root (mini recipes)
corpus_seed=0            # seed of the mini corpus
confs="conf/patchmix_cl.yaml"  # training configs (one method each); stage 3 trains each of them
seeds="1 2 3 4 5"        # training seeds; results report mean +- std over them
pretrained=""            # AST checkpoint for model.init audioset/imagenet: transformers folder or .pth
resume=auto              # training: auto (continue from last.ckpt, a changed config is refused) | never (afresh, old run archived) | force (continue, change recorded)
train_args=""            # extra config overrides, e.g. "trainer.max_epochs=2 optim.lr=1e-4"
eval_which="best last"   # checkpoints to evaluate: best (chosen on test, paper protocol) and/or last
val_fraction=0           # > 0: also train every conf under the clean protocol into <method>_clean (best epoch chosen on this fraction of the training patients, held out)
real_samples=""          # folder of a few real ICBHI recordings (audio_and_txt_files/, lists/official_split.txt): stage 5 evaluates the trained models on them; empty: stage 5 is skipped
. "$(dirname "${BASH_SOURCE[0]}")/parse_options.sh"

. "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

expdir="${exp_root}/${tag}"
make_expdir
corpus_root="${corpus_root:-${ICBHI}}"

log "${_cmdline}"
log "recipe: confs=(${confs}) seeds=(${seeds}) expdir=${expdir}"

# conf file -> method folder name (conf/patchmix_cl.yaml -> patchmix_cl)
cname() { basename "${1%.*}"; }
# the clean protocol is requested (--val_fraction above 0)
clean_protocol() { awk -v f="${val_fraction}" 'BEGIN { exit !(f > 0) }'; }
# method folders of a conf: the paper protocol's, then the clean protocol's when requested
run_dirs() { echo "${expdir}/$(cname "$1")"; if clean_protocol; then echo "${expdir}/$(cname "$1")_clean"; fi; }
# training arguments of a method folder: the clean one holds out --val_fraction of the training patients
protocol_args() { case "$1" in *_clean) echo "--set data.val_fraction=${val_fraction}" ;; esac; }

# --set overrides shared by the feature and training stages
overrides=(--set "data.train=${datadir}/train/cycles.tsv" --set "data.test=${datadir}/test/cycles.tsv"
           --set "data.cache_dir=${dumpdir}/features")
if [ -n "${pretrained}" ]; then overrides+=(--set "model.checkpoint=${pretrained}"); fi
for kv in ${train_args}; do overrides+=(--set "${kv}"); done

corpus_stage() {
  if "${make_corpus}"; then
    python -m audio_cls.bin.make_mini_icbhi --out "${corpus_root}" --seed "${corpus_seed}"
  else
    require_root ICBHI corpus_root "${corpus_root}" \
      "Download the ICBHI 2017 Respiratory Sound Database (https://bhichallenge.med.auth.gr/sites/default/files/ICBHI_final_database/ICBHI_final_database.zip) and the official split ICBHI_challenge_train_test.txt, and unzip both into one folder."
    python -m audio_cls.bin.prepare_icbhi --root "${corpus_root}" --check_only true \
      ${split_file:+--split_file "${split_file}"}
    if [ -n "${pretrained}" ] && [ ! -e "${pretrained}" ]; then
      echo "ERROR: --pretrained ${pretrained} does not exist." >&2
      echo "       Download the AudioSet AST (transformers folder MIT/ast-finetuned-audioset-10-10-0.4593, or audioset_10_10_0.4593.pth from the AST README) and pass its path." >&2
      return 1
    fi
  fi
}

data_stage() {
  python -m audio_cls.bin.prepare_icbhi --root "${corpus_root}" --out "${datadir}" \
    --missing_audio "${missing_audio}" --bad_cycles "${bad_cycles}" ${split_file:+--split_file "${split_file}"}
}

feature_stage() {
  # shellcheck disable=SC2086
  python -m audio_cls.bin.cache_features --config ${confs} "${overrides[@]}"
}

train_stage() {
  local conf dir
  for conf in ${confs}; do
    for dir in $(run_dirs "${conf}"); do
      # shellcheck disable=SC2086,SC2046
      launch 1 1 audio_cls.bin.train --config "${conf}" --expdir "${dir}" \
        --seeds ${seeds} --resume "${resume}" "${overrides[@]}" $(protocol_args "${dir}")
    done
  done
}

eval_stage() {
  local conf dirs=()
  # shellcheck disable=SC2207
  for conf in ${confs}; do dirs+=($(run_dirs "${conf}")); done
  # shellcheck disable=SC2086
  python -m audio_cls.bin.evaluate --expdir "${dirs[@]}" --which ${eval_which}
  python -m audio_cls.bin.results --exp "${expdir}" --title "ICBHI results: ${tag}"
}

# the real-sample smoke test: prepare (split entries without audio skipped), cache, evaluate each method's
# first seed (last epoch, no selection); outside <method>/seed*/eval/, so results.md never mixes it in
real_samples_stage() {
  local conf real_data="${datadir}/real_samples"
  python -m audio_cls.bin.prepare_icbhi --root "${real_samples}" --out "${real_data}" --missing_audio skip \
    --bad_cycles "${bad_cycles}"
  # shellcheck disable=SC2086
  python -m audio_cls.bin.cache_features --config ${confs} "${overrides[@]}" \
    --set "data.train=${real_data}/train/cycles.tsv" --set "data.test=${real_data}/test/cycles.tsv"
  for conf in ${confs}; do
    python -m audio_cls.bin.evaluate --ckpt "$(first_seed_ckpt "${conf}")" --test "${real_data}/test/cycles.tsv" \
      --out "${expdir}/real_samples/$(cname "${conf}")"
  done
  echo "Real ICBHI samples (${real_samples}): a smoke test of the real format through the trained mini models, not a score claim."
}
# the checkpoint stage 5 evaluates: the last epoch of the first seed of a conf (paper-protocol folder)
first_seed_ckpt() { echo "${expdir}/$(cname "$1")/seed${seeds%% *}/checkpoints/last.ckpt"; }

# preflight: before stage ${stage} does any work, check the configs and inputs of every stage that will run
preflight() {
  local conf dir
  for conf in ${confs}; do
    [ -f "${conf}" ] || { echo "ERROR: --confs: ${conf}: no such file (see conf/ of this recipe)" >&2; return 1; }
  done
  if ! want_stage 1 && { want_stage 2 || want_stage 3; }; then
    require_input "${datadir}/train/cycles.tsv" 1 "the training cycle manifest"
    require_input "${datadir}/test/cycles.tsv" 1 "the test cycle manifest"
  fi
  if ! want_stage 3 && want_stage 4; then
    for conf in ${confs}; do
      for dir in $(run_dirs "${conf}"); do require_input "${dir}" 3 "the trained runs of ${conf}"; done
    done
  fi
  if [ -n "${real_samples}" ] && want_stage 5; then
    [ -d "${real_samples}/audio_and_txt_files" ] || {
      echo "ERROR: --real_samples ${real_samples}: no audio_and_txt_files/ folder; point it at real ICBHI recordings (e.g. the icbhi_samples test data, \`make test-data\`) or pass --real_samples \"\"" >&2
      return 1; }
    if ! want_stage 3; then
      for conf in ${confs}; do require_input "$(first_seed_ckpt "${conf}")" 3 "the last checkpoint of ${conf}"; done
    fi
  fi
  if want_stage 3; then
    for conf in ${confs}; do
      for dir in $(run_dirs "${conf}"); do
        # shellcheck disable=SC2086,SC2046
        python -m audio_cls.bin.train --config "${conf}" --expdir "${dir}" --seeds ${seeds} \
          --resume "${resume}" "${overrides[@]}" $(protocol_args "${dir}") --check
      done
    done
  fi
}
check_stages preflight

run_stage 0 "corpus: ${corpus_root}" corpus_stage
run_stage 1 "data preparation: ${corpus_root} -> ${datadir}/{train,test}/cycles.tsv" data_stage
run_stage 2 "feature cache -> ${dumpdir}/features" feature_stage
run_stage 3 "training (${confs}; seeds ${seeds}) -> ${expdir}/<method>/seed<N>" train_stage
run_stage 4 "evaluation + results table -> ${expdir}/results.md" eval_stage
if [ -n "${real_samples}" ]; then
  run_stage 5 "real-sample smoke test: ${real_samples} -> ${expdir}/real_samples (not a score)" real_samples_stage
elif want_stage 5; then
  log "Stage 5 (real-sample smoke test) skipped: no --real_samples"
fi

finish_recipe
