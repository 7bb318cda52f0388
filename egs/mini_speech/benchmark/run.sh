#!/usr/bin/env bash
# Mini speech benchmark: a richer synthesized corpus -> a mini HuBERT teacher pretrained on it (width 128,
# ../conf/pretrain_teacher_wide.yaml) -> STaR, ARMHuBERT and DistilHuBERT students distilled from it (the
# mini recipes with this folder's conf/<method>.yaml: about the same parameters, the same steps) ->
# mini SUPERB in probe mode (KS, SID, IC, PR: frozen upstream, learnt layer weights, small downstream,
# audio_compress.superb.probe) for fbank, the random teacher, the pretrained teacher and the three
# students over several downstream seeds -> <workdir>/exp/results.{md,json,png}. CPU. Options: bash run.sh --help
#
# Stages:
#   0: data        the synthesized corpus and its Kaldi data dirs (the first method's recipe, stages 0-1)
#   1: students    the random teacher (the pretraining's starting point: same architecture, front end, deltas
#                  start and seed, untrained) as a transformers folder; then side by side, one thread each: the
#                  probes of the reference rows fbank and teacher_random (they need the data only;
#                  exp/logs/reference_probes.log), the three mini recipes, stages 2-5
#                  (pretrained teacher, student), each with conf/<method>.yaml here (the student starts from
#                  the teacher's front end), and, once the first recipe has the teacher, the teacher's probes
#                  (exp/logs/teacher_probes.log)
#   2: benchmark   features of the students (exp/features), their probes (exp/probes/<row>/<task>/seed<N>.json;
#                  the reference rows' and the teacher's are found), then exp/results.{md,json,png} (chance,
#                  mean ± std over seeds, retention, checks)
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

if [ ! -f "${teacher_conf}" ]; then
  echo "ERROR: --teacher_conf ${teacher_conf} is missing (relative paths start at ${_here}): give a pretraining YAML." >&2
  exit 1
fi
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

references=(fbank "teacher_random:ssl_teacher_local=${expdir}/teacher_random")
refs_log="${expdir}/logs/reference_probes.log"
teacher_row="teacher:ssl_teacher_local=${teacher_dir}"
teacher_log="${expdir}/logs/teacher_probes.log"

# method_recipe M FROM TO: the mini recipe of method M, stages FROM..TO, in this benchmark's folders
method_recipe() {
  bash "../$1/run.sh" --stage "$2" --stop_stage "$3" --corpus_root "${_w}/corpus" --datadir "${_w}/data" \
    --exp_root "${expdir}" --dumpdir "${_w}/dump" --conf "${_student_confs}/$1.yaml" --teacher pretrain \
    --teacher_cache "${expdir}/teachers" \
    --teacher_conf "${_teacher_conf}" --corpus_args "${corpus_args}" --teacher_args "${teacher_args}" \
    --train_args "${train_args}"
}

# audio_compress.bin.mini_benchmark on this benchmark's data, seeds and probe settings (an array, not a function:
# started in the background it is then the process itself, which the stage can stop)
read -ra _seeds <<< "${seeds}"
read -ra _probe_args <<< "${probe_args}"
probes=(python -m audio_compress.bin.mini_benchmark --data "${_w}/data" --seeds "${_seeds[@]}" --out "${expdir}"
        ${_probe_args[@]+"${_probe_args[@]}"})

# init_args: the teacher pretraining entry point's arguments that fix the model (the recipes add the data)
init_args=(--config "${_teacher_conf}" --cache_root "${expdir}/teachers")
for _kv in ${teacher_args}; do init_args+=(--set "${_kv}"); done

# preflight: before any stage works, the teacher config and the inputs that the stages this run skips made
preflight() {
  local split m
  if ! want_stage 0 && { want_stage 1 || want_stage 2; }; then
    for split in train dev_mini test_mini; do
      require_input "${_w}/data/${split}/wav.scp" 0 "the ${split} data dir"
    done
  fi
  if want_stage 1; then
    python -m audio_compress.bin.pretrain_teacher "${init_args[@]}" --check > /dev/null
  elif want_stage 2; then
    require_input "${expdir}/teacher_random/config.json" 1 "the random teacher"
    require_input "${teacher_dir}/config.json" 1 "the pretrained teacher"
    for m in ${methods}; do require_input "${expdir}/${m}_${students[${m}]}/student.pt" 1 "the ${m} student"; done
  fi
}

data_stage() {
  method_recipe "${first}" 0 1
}

students_stage() {
  local m refs tprobes
  # the random teacher is where the teacher's pretraining starts: its architecture (overrides included), its
  # filterbank and deltas start, its seed; so teacher - teacher_random is what pretraining taught
  python -m audio_compress.bin.pretrain_teacher "${init_args[@]}" --initial --out "${expdir}/teacher_random"
  python -m audio_compress.bin.prepare_teacher --teacher "${expdir}/teacher_random" --out "${expdir}/teacher_random" \
    --check_data "${_w}/data/dev_mini"
  # the reference rows need the data only: their probes train on one core while the teacher and the students
  # train on the other (one thread each: the small models gain little from a second thread, and two
  # processes of two threads on two cores slow each other down)
  OMP_NUM_THREADS=1 "${probes[@]}" --upstream "${references[@]}" --nj 1 --probes_only > "${refs_log}" 2>&1 &
  refs=$!
  # the teacher's probes start once the first recipe is done with its teacher: when its distillation stage
  # starts (its log newer than this stage's start; a log of an earlier run does not count)
  local started="${expdir}/logs/.students_stage_start" distill_log="${teacher_dir%/teacher}/logs/stage4.log"
  touch "${started}"
  (
    until [ "${distill_log}" -nt "${started}" ]; do sleep 5; done
    OMP_NUM_THREADS=1 exec "${probes[@]}" --upstream "${teacher_row}" --nj 1 --probes_only
  ) > "${teacher_log}" 2>&1 &
  tprobes=$!
  # shellcheck disable=SC2064
  trap "kill ${refs} ${tprobes} 2>/dev/null || true" EXIT  # the stage's subshell ends: so do the probes
  for m in ${methods}; do
    # the first recipe pretrains the teacher, the later ones find it in the cache
    OMP_NUM_THREADS=1 method_recipe "${m}" 2 5
  done
  wait_probes "${refs}" "${refs_log}" "${references[*]%%:*}"
  wait_probes "${tprobes}" "${teacher_log}" teacher
  trap - EXIT
  echo "probes of ${references[*]%%:*}: ${refs_log}; of the teacher: ${teacher_log}"
}

# wait_probes PID LOG ROWS: wait for background probes, failing with the end of their log
wait_probes() {
  if ! wait "$1"; then
    echo "ERROR: the probes of $3 failed; their log, $2, ends with:" >&2
    tail -n 20 "$2" >&2
    return 1
  fi
}

benchmark_stage() {
  local m ups=("${references[@]}" "${teacher_row}")
  for m in ${methods}; do ups+=("${m}:${m}_local=${expdir}/${m}_${students[${m}]}/student.pt"); done
  # shellcheck disable=SC2086
  "${probes[@]}" --upstream "${ups[@]}" --students ${methods} --nj "${probe_nj}"
}

check_stages preflight

run_stage 0 "corpus and data -> ${_w}/{corpus,data}" data_stage
run_stage 1 "random teacher, pretrained teacher and students (${methods}); the probes of fbank, the random teacher and the teacher beside them" students_stage
run_stage 2 "mini SUPERB probes, seeds ${seeds} -> ${expdir}/results.{md,json,png}" benchmark_stage
finish_recipe
