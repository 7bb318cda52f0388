#!/usr/bin/env bash
# Mini speech benchmark: a richer synthesized corpus -> a mini HuBERT teacher pretrained on it ->
# STaR, ARMHuBERT and DistilHuBERT students distilled from it (the mini recipes, same budget each) ->
# mini SUPERB (KS, SID, IC, PR) for fbank, the random teacher, the pretrained teacher and the three
# students over several downstream seeds -> <workdir>/exp/results.{md,json,png}. CPU. Options: bash run.sh --help
#
# Stages:
#   0: students    the three mini recipes, stages 0-5, into this folder (corpus, data, teacher, student)
#   1: reference   the randomly initialised teacher (same architecture) as a transformers folder
#   2: SUPERB      mini SUPERB for every row and downstream seed -> exp/superb/seed<N>/<row>/<task>/
#   3: table       exp/results.{md,json,png} (chance levels, mean ± std over seeds, retention)
set -euo pipefail
_here="$(cd "$(dirname "$0")" && pwd)"

workdir=.                # where corpus/, data/, dump/ and exp/ go (relative: to this recipe's folder)
stage=0                  # first stage to run
stop_stage=100           # last stage to run
methods="star armhubert distilhubert"  # students, each through egs/mini_speech/<method>/run.sh
seeds="1 2 3"            # downstream seeds of every SUPERB run
corpus_args="--preset rich --num_speakers 16 --utts_per_speaker 60,12,12"  # make_mini_corpus options
teacher_conf=../conf/pretrain_teacher.yaml  # the teacher pretraining YAML
teacher_args=""          # teacher pretraining overrides, e.g. "trainer.max_steps=100"
train_args=""            # distillation overrides of every student (same budget each), e.g. "trainer.max_steps=50"
superb_args=""           # extra audio_compress.bin.superb args, e.g. "--override runner.total_steps=50"
superb_nj=2              # SUPERB runs in parallel
. "${_here}/../../../recipes/parse_options.sh"
cd "${_here}"
. ../../../recipes/setup.sh

mkdir -p "${workdir}"
_w="$(cd "${workdir}" && pwd)"
_teacher_conf="$(cd "$(dirname "${teacher_conf}")" && pwd)/$(basename "${teacher_conf}")"
expdir="${_w}/exp"
make_expdir
declare -A students=([star]=tiny_star [armhubert]=tiny_arm [distilhubert]=tiny_distil)
first="${methods%% *}"
teacher_dir="${expdir}/${first}_${students[${first}]}/teacher"

students_stage() {
  local m from=0
  for m in ${methods}; do
    # the corpus, data and pretrained teacher are made once (the later recipes reuse them)
    bash "../${m}/run.sh" --stage "${from}" --stop_stage 5 --corpus_root "${_w}/corpus" --datadir "${_w}/data" \
      --exp_root "${expdir}" --dumpdir "${_w}/dump" --teacher pretrain --teacher_cache "${expdir}/teachers" \
      --teacher_conf "${_teacher_conf}" --corpus_args "${corpus_args}" --teacher_args "${teacher_args}" \
      --train_args "${train_args}"
    from=2
  done
}

reference_stage() {
  local arch
  arch="$(python -m audio_compress.bin.pretrain_teacher --config "${_teacher_conf}" --cache_root "${expdir}/teachers" --check)"
  python -m audio_compress.bin.prepare_teacher --teacher "${arch}" --seed 0 --out "${expdir}/teacher_random" \
    --check_data "${_w}/data/dev_mini"
}

superb_stage() {
  local seed m ups=(fbank "teacher_random:ssl_teacher_local=${expdir}/teacher_random" "teacher:ssl_teacher_local=${teacher_dir}")
  for m in ${methods}; do ups+=("${m}:${m}_local=${expdir}/${m}_${students[${m}]}/student.pt"); done
  python -m audio_compress.bin.superb layouts --source mini --train "${_w}/data/train" --dev "${_w}/data/dev_mini" \
    --test "${_w}/data/test_mini" --out "${_w}/dump/superb" --tasks pr,ks,sid,ic
  for seed in ${seeds}; do
    # shellcheck disable=SC2086
    python -m audio_compress.bin.superb --task pr ks sid ic --mini true --data_root "${_w}/dump/superb" --device cpu \
      --nj "${superb_nj}" --seed "${seed}" --out_root "${expdir}/superb/seed${seed}" --upstream "${ups[@]}" ${superb_args}
  done
}

table_stage() {
  local seed roots=()
  for seed in ${seeds}; do roots+=("${expdir}/superb/seed${seed}"); done
  # shellcheck disable=SC2086
  python -m audio_compress.bin.mini_benchmark --metrics "${roots[@]}" --layouts "${_w}/dump/superb" \
    --rows fbank teacher_random teacher ${methods} --students ${methods} --out "${expdir}"
}

run_stage 0 "students (${methods}) from the pretrained mini teacher" students_stage
run_stage 1 "random teacher -> ${expdir}/teacher_random" reference_stage
run_stage 2 "mini SUPERB, seeds ${seeds} -> ${expdir}/superb/seed<N>" superb_stage
run_stage 3 "results -> ${expdir}/results.{md,json,png}" table_stage
finish_recipe
