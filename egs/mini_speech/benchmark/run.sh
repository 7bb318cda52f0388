#!/usr/bin/env bash
# Mini speech benchmark: a richer synthesized corpus -> a mini HuBERT teacher pretrained on it (width 128,
# ../conf/pretrain_teacher_wide.yaml) -> STaR, ARMHuBERT and DistilHuBERT students distilled from it (the
# mini recipes with this folder's conf/<method>.yaml: about the same parameters, the same steps) ->
# mini SUPERB in probe mode (KS, SID, IC, PR: frozen upstream, learnt layer weights, small downstream,
# audio_compress.superb.probe) for fbank, the random teacher, the pretrained teacher and the three
# students over several downstream seeds -> <workdir>/exp/results.{md,json,png}. CPU. Options: bash run.sh --help
#
# Stages:
#   0: students    the three mini recipes, stages 0-5, into this folder (corpus, data, teacher, student), each
#                  with conf/<method>.yaml here (the student starts from the teacher's front end)
#   1: reference   the randomly initialised teacher (same architecture) as a transformers folder
#   2: benchmark   features of every row (exp/features), every probe (exp/probes/<row>/<task>/seed<N>.json),
#                  then exp/results.{md,json,png} (chance, mean ± std over seeds, retention, checks)
set -euo pipefail
_here="$(cd "$(dirname "$0")" && pwd)"

workdir=.                # where corpus/, data/, dump/ and exp/ go (relative: to this recipe's folder)
stage=0                  # first stage to run
stop_stage=100           # last stage to run
methods="star armhubert distilhubert"  # students, each through egs/mini_speech/<method>/run.sh
seeds="1 2 3"            # downstream seeds of every SUPERB run
# make_mini_corpus options: a test split twice the dev split, so that one utterance moves KS and IC by 1 point
corpus_args="--preset rich --num_speakers 16 --utts_per_speaker 60,12,24"
teacher_conf=../conf/pretrain_teacher_wide.yaml  # the teacher pretraining YAML
student_confs=conf       # folder of the students' distillation YAMLs, <method>.yaml each
teacher_args=""          # teacher pretraining overrides, e.g. "trainer.max_steps=100"
train_args=""            # distillation overrides of every student (same budget each), e.g. "trainer.max_steps=50"
probe_args=""            # probe settings, e.g. "--set epochs=5 --set pr_epochs=5" (audio_compress.superb.probe.ProbeConfig)
probe_nj=2               # probes trained in parallel (one thread each)
. "${_here}/../../../recipes/parse_options.sh"
cd "${_here}"
. ../../../recipes/setup.sh

for m in ${methods}; do
  if [ ! -f "${student_confs}/${m}.yaml" ]; then
    echo "ERROR: ${student_confs}/${m}.yaml is missing: --student_confs needs a distillation YAML per method (${methods})." >&2
    exit 1
  fi
done
mkdir -p "${workdir}"
_w="$(cd "${workdir}" && pwd)"
_teacher_conf="$(cd "$(dirname "${teacher_conf}")" && pwd)/$(basename "${teacher_conf}")"
_student_confs="$(cd "${student_confs}" && pwd)"
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
      --exp_root "${expdir}" --dumpdir "${_w}/dump" --conf "${_student_confs}/${m}.yaml" --teacher pretrain \
      --teacher_cache "${expdir}/teachers" \
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

benchmark_stage() {
  local m ups=(fbank "teacher_random:ssl_teacher_local=${expdir}/teacher_random" "teacher:ssl_teacher_local=${teacher_dir}")
  for m in ${methods}; do ups+=("${m}:${m}_local=${expdir}/${m}_${students[${m}]}/student.pt"); done
  # shellcheck disable=SC2086
  python -m audio_compress.bin.mini_benchmark --data "${_w}/data" --upstream "${ups[@]}" --students ${methods} \
    --seeds ${seeds} --nj "${probe_nj}" --out "${expdir}" ${probe_args}
}

run_stage 0 "students (${methods}) from the pretrained mini teacher" students_stage
run_stage 1 "random teacher -> ${expdir}/teacher_random" reference_stage
run_stage 2 "mini SUPERB probes, seeds ${seeds} -> ${expdir}/results.{md,json,png}" benchmark_stage
finish_recipe
