#!/usr/bin/env bash
# Template recipe for speech SSL distillation (STaR, ARMHuBERT, DistilHuBERT).
# Called by egs/<corpus>/<method>/run.sh, which sets corpus- and method-specific
# options and forwards the user's flags ("$@"). Run `run.sh --help` for options.
#
# Stages:
#   0: corpus      mini recipes synthesize their corpus; full recipes check $LIBRISPEECH
#   1: data prep   LibriSpeech layout -> Kaldi data dirs under ${datadir}/
#   2: teacher     load/convert the teacher (--teacher pretrain: pretrain a mini HuBERT on the training set,
#                  cached in ${teacher_cache}), save a local transformers copy, check it on data
#   3: dump        (use_dump=true) teacher features of train/dev stored in fp16 shards
#   4: distill     Lightning training (resumes from the last checkpoint when re-run)
#   5: export      standalone student checkpoint + s3prl upstream check (<method>_local)
#   6: SUPERB      downstream tasks for the student (and --upstream_ckpt: a released checkpoint)
#   7: results     the SUPERB table beside the published rows of the conf's teacher family
set -euo pipefail

_cmdline="$0 $*"  # not an option: names starting with _ are skipped by --help

# ---- options (each line: name=default  # description; listed by --help) ----
stage=0                  # first stage to run
stop_stage=100           # last stage to run
method=star              # distillation method: star | armhubert | distilhubert
tag=""                   # experiment name (default: <method>_<student>)
exp_root=exp             # experiments go to <exp_root>/<tag>
datadir=data             # Kaldi data dirs
corpus_root=""           # folder holding LibriSpeech/<subset> (default: $LIBRISPEECH from db.sh)
make_corpus=false        # stage 0 synthesizes the mini corpus into corpus_root (mini recipes)
corpus_seed=0            # seed of the mini corpus
corpus_args=""           # further make_mini_corpus options (mini recipes), e.g. "--preset rich --num_speakers 20"
train_sets="train-clean-100"  # training subsets (combined into one data dir)
train_name=train         # name of the combined training data dir
dev_set=dev-clean        # validation subset
test_sets="test-clean"   # test subsets
nj=4                     # parallel jobs for data preparation
check_audio=full         # data prep audio check: full (decode every file; cached by size+mtime) | header (headers and file ends)
multichannel=refuse      # multi-channel audio at data prep: refuse | mean | first (recorded in the data dir for later stages)
on_bad_audio=fail        # bad audio at data prep: fail | skip (skipped files listed in bad_audio.txt)
resample=false           # resample audio that is not 16 kHz in every stage that reads it (false: refuse it)
conf=conf/distill.yaml   # distillation config (YAML); its student and teacher are the defaults of --student/--teacher
teacher=""               # teacher: named architecture (random weights), transformers folder, fairseq/unilm .pt, or "pretrain" (HuBERT iteration 1 on the training set, --teacher_conf) (default: the conf's; its family must match the conf's)
teacher_seed=0           # seed for a randomly initialised named teacher
teacher_conf=""          # --teacher pretrain: the pretraining YAML (audio_compress.teachers.pretrain.PretrainConfig)
teacher_cache=""         # --teacher pretrain: cache of pretrained teachers keyed by audio content + config (default: <exp_root>/teachers)
teacher_args=""          # --teacher pretrain: extra config overrides, e.g. "trainer.max_steps=100"
student=""               # student architecture, see audio_compress.models (default: the conf's)
trust=false              # unpickle checkpoint files fully (teacher .pt, --upstream_ckpt), which can run code in them: only for trusted files the safe reader refuses
use_dump=false           # stage 3 dumps teacher features; training reads them (star, distilhubert)
dumpdir=dump             # where feature dumps go
train_args=""            # extra config overrides for training, e.g. "trainer.max_steps=100 optim.lr=1e-3"
resume=auto              # training: auto (continue from last.ckpt, a changed config is refused) | never (afresh, old run archived) | force (continue, change recorded)
cmd_backend=local        # how the distillation stage starts: local | slurm | torchrun (see recipes/cmd.sh)
ngpu=1                   # processes per node for cmd_backend=torchrun (trainer.devices must match)
nnodes=1                 # nodes for cmd_backend=torchrun
export_which=best        # checkpoint to export: best (lowest dev loss) | last
superb_upstreams=""      # stage 6 upstreams "[tag:]name[=ckpt[@config.yaml]] ..." (default mini: student, teacher, fbank; full: student)
superb_student=true      # stage 6 evaluates the exported student (false: leave it out, e.g. to evaluate only --upstream_ckpt; mini SUPERB still adds the teacher and fbank)
upstream_ckpt=""         # stage 6 also evaluates this released checkpoint (a file you did not make): PATH (entry <method>_local) or ENTRY=PATH
upstream_config=""       # the model-config YAML of --upstream_ckpt (Lightning releases of STaR, ARMHuBERT, ARMwavLM need it)
superb_tasks="pr asr ks qbe sid asv sd ic sf er"  # stage 6 SUPERB tasks (mini: pr ks sid ic)
superb_mini=false        # mini SUPERB: small configs on layouts built from ${datadir} (tasks pr ks sid ic)
superb_data=""           # mini layouts / metadata derived from full corpora (default: ${dumpdir}/superb)
superb_device=cuda       # device of the SUPERB runs: cuda | cpu
superb_nj=1              # (upstream, task) runs in parallel
superb_ngpu=1            # DDP processes (GPUs) per SUPERB training run
superb_paper_deviations=false  # ARMHuBERT/STaR deviations: LR scheduler on, SID lr x10
superb_args=""           # extra args for audio_compress.bin.superb, e.g. "--override runner.total_steps=1000"
superb_force=false       # redo finished (upstream, task) runs
superb_published=""      # stage 7 published rows, comma-separated (default: those for the conf's teacher family)
s3prl_root=""            # pinned s3prl checkout for full tasks (default: <repo>/tools/s3prl)
s3prl_fetch=true         # stage 6 clones s3prl into s3prl_root when missing (needs internet once)
. "$(dirname "${BASH_SOURCE[0]}")/parse_options.sh"

. "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

if [ -z "${student}" ] || [ -z "${teacher}" ]; then
  _conf_values="$(python -m audio_compress.bin.recipe_conf show --conf "${conf}")" || exit 1
  read -r _conf_student _conf_teacher <<< "${_conf_values}"
  student="${student:-${_conf_student}}"
  teacher="${teacher:-${_conf_teacher}}"
fi
# --upstream_ckpt [ENTRY=]PATH: the s3prl entry defaults to the method's (an entry is an identifier,
# so a Lightning file name such as best-step=100.ckpt stays a path)
_released_entry="${method}_local"
_released_ckpt="${upstream_ckpt}"
if [[ "${upstream_ckpt}" =~ ^([A-Za-z_][A-Za-z0-9_]*)=(.+)$ ]]; then
  _released_entry="${BASH_REMATCH[1]}"
  _released_ckpt="${BASH_REMATCH[2]}"
fi
_released_spec="${_released_entry}=${_released_ckpt}${upstream_config:+@${upstream_config}}"
[ -n "${tag}" ] || tag="${method}_${student}"
expdir="${exp_root}/${tag}"
make_expdir
corpus_root="${corpus_root:-${LIBRISPEECH}}"
s3prl_root="${s3prl_root:-${MAIN_ROOT}/tools/s3prl}"
superb_data="${superb_data:-${dumpdir}/superb}"
teacher_cache="${teacher_cache:-${exp_root}/teachers}"

log "${_cmdline}"
log "recipe: method=${method} student=${student} teacher=${teacher} conf=${conf} expdir=${expdir}"

# subset name -> data dir name (dev-clean -> dev_clean)
dname() { echo "${1//-/_}"; }

corpus_stage() {
  if "${make_corpus}"; then
    # shellcheck disable=SC2086
    python -m audio_compress.bin.make_mini_corpus --out "${corpus_root}" --seed "${corpus_seed}" ${corpus_args}
  else
    require_root LIBRISPEECH corpus_root "${corpus_root}" \
      "Download LibriSpeech (openslr.org/12: train-clean-100, train-clean-360, train-other-500, dev-clean, test-clean) and unpack it so that <root>/LibriSpeech/<subset> exists."
    for s in ${train_sets} ${dev_set} ${test_sets}; do
      if [ ! -d "${corpus_root}/LibriSpeech/${s}" ] && [ ! -d "${corpus_root}/${s}" ]; then
        echo "ERROR: subset ${s} not found under ${corpus_root}; download and unpack it." >&2
        return 1
      fi
    done
    echo "All subsets present under ${corpus_root}"
  fi
}

data_stage() {
  local common=(--root "${corpus_root}" --nj "${nj}" --check "${check_audio}"
                --on_bad_audio "${on_bad_audio}" --resample "${resample}" --multichannel "${multichannel}"
                --out "${datadir}")
  # shellcheck disable=SC2086
  python -m audio_compress.bin.prepare_librispeech "${common[@]}" \
    --subsets "$(echo ${train_sets} | tr ' ' ',')" --combine_as "${train_name}"
  # shellcheck disable=SC2086
  python -m audio_compress.bin.prepare_librispeech "${common[@]}" \
    --subsets "$(printf '%s\n' ${dev_set} ${test_sets} | sort -u | paste -sd, -)"
}

# check_prepared_teacher: the converted teacher's family is the one the conf was written for
check_prepared_teacher() {
  python -m audio_compress.bin.recipe_conf check_teacher --conf "${conf}" --teacher "${expdir}/teacher" \
    --label "the teacher prepared from --teacher ${teacher} (${expdir}/teacher)"
}

# pretrain_args: the arguments of the teacher pretraining entry point (stage 2 and its preflight check)
pretrain_args=()
set_pretrain_args() {
  pretrain_args=(--config "${teacher_conf}" --cache_root "${teacher_cache}"
                 --set "data.train=${datadir}/${train_name}" --set "data.dev=${datadir}/$(dname "${dev_set}")"
                 --set "data.resample=${resample}")
  local kv
  for kv in ${teacher_args}; do pretrain_args+=(--set "${kv}"); done
}

teacher_stage() {
  local source="${teacher}"
  if [ "${teacher}" = pretrain ]; then
    # the cached (or freshly pretrained) teacher is copied into place, then checked like any other
    set_pretrain_args
    python -m audio_compress.bin.pretrain_teacher "${pretrain_args[@]}" --out "${expdir}/teacher"
    source="${expdir}/teacher"
  fi
  python -m audio_compress.bin.prepare_teacher --teacher "${source}" --seed "${teacher_seed}" \
    --out "${expdir}/teacher" --check_data "${datadir}/$(dname "${dev_set}")" --resample "${resample}" \
    --trust "${trust}"
  check_prepared_teacher
}

dump_stage() {
  # one process (not through launch): under srun or torchrun every task would write the same dump
  local set
  for set in "${train_name}" "$(dname "${dev_set}")"; do
    python -m audio_compress.bin.dump_teacher --config "${conf}" --teacher "${expdir}/teacher" \
      --set "student=${student}" --resample "${resample}" --data "${datadir}/${set}" --out "${dumpdir}/${tag}/${set}"
  done
}

# distill_args: the arguments of the distillation entry point (stage 4 and its preflight check)
distill_args=()
set_distill_args() {
  distill_args=(--config "${conf}" --expdir "${expdir}" --resume "${resume}"
                --set "method=${method}" --set "student=${student}" --set "teacher=${expdir}/teacher"
                --set "data.train=${datadir}/${train_name}" --set "data.dev=${datadir}/$(dname "${dev_set}")"
                --set "data.resample=${resample}")
  if "${use_dump}"; then
    distill_args+=(--set "data.dump_dir=${dumpdir}/${tag}/${train_name}"
                   --set "data.dev_dump_dir=${dumpdir}/${tag}/$(dname "${dev_set}")")
  fi
  local kv
  for kv in ${train_args}; do distill_args+=(--set "${kv}"); done
}

distill_stage() {
  set_distill_args
  launch "${ngpu}" "${nnodes}" audio_compress.bin.distill "${distill_args[@]}"
}

export_stage() {
  python -m audio_compress.bin.export --ckpt_dir "${expdir}/checkpoints" --which "${export_which}" \
    --out "${expdir}/student.pt" --pretrained "${expdir}/pretrained"
}

# superb_ups: the upstreams of stage 6 other than --upstream_ckpt
superb_ups=()
set_superb_ups() {
  superb_ups=()
  if [ -n "${superb_upstreams}" ]; then
    read -r -a superb_ups <<< "${superb_upstreams}"
    return 0
  fi
  if "${superb_student}"; then superb_ups+=("${method}_local=${expdir}/student.pt"); fi
  if "${superb_mini}"; then superb_ups+=("ssl_teacher_local=${expdir}/teacher" fbank); fi
}

superb_stage() {
  local tasks_csv roots=() var
  set_superb_ups
  tasks_csv="$(echo ${superb_tasks} | tr ' ' ',')"
  local common=(--task ${superb_tasks} --out_root "${expdir}/superb"
                --device "${superb_device}" --nj "${superb_nj}" --nproc "${superb_ngpu}"
                --paper_deviations "${superb_paper_deviations}" --force "${superb_force}"
                --data_root "${superb_data}" --trust "${trust}")
  if [ ${#superb_ups[@]} -gt 0 ]; then common+=(--upstream "${superb_ups[@]}"); fi
  if [ -n "${upstream_ckpt}" ]; then common+=(--released "${_released_spec}"); fi
  if "${superb_mini}"; then
    local test_set
    test_set="$(dname "${test_sets%% *}")"
    python -m audio_compress.bin.superb layouts --source mini --train "${datadir}/${train_name}" \
      --dev "${datadir}/$(dname "${dev_set}")" --test "${datadir}/${test_set}" \
      --out "${superb_data}" --tasks "${tasks_csv}"
    # shellcheck disable=SC2086
    python -m audio_compress.bin.superb "${common[@]}" --mini true ${superb_args}
  else
    python -m audio_compress.bin.superb tools --dest "${s3prl_root}" --fetch "${s3prl_fetch}" \
      --tasks "${tasks_csv}"
    for var in LIBRISPEECH SPEECH_COMMANDS SPEECH_COMMANDS_TEST FLUENT_COMMANDS VOXCELEB1 \
               IEMOCAP SNIPS QUESST14 LIBRIMIX; do
      if [ -n "${!var:-}" ]; then roots+=("${var}=${!var}"); fi
    done
    if [ -n "${corpus_root}" ]; then roots+=("LIBRISPEECH=${corpus_root}"); fi
    if [ ${#roots[@]} -gt 0 ]; then common+=(--root "${roots[@]}"); fi
    # shellcheck disable=SC2086
    python -m audio_compress.bin.superb "${common[@]}" --s3prl_root "${s3prl_root}" ${superb_args}
  fi
}

results_stage() {
  local kind=--full published=() family
  if "${superb_mini}"; then kind=--mini; fi
  if [ -n "${superb_published}" ]; then
    published=(--published "${superb_published}")
  else
    family="$(python -m audio_compress.bin.recipe_conf family --conf "${conf}")"
    if [ "${family}" != unknown ]; then published=(--published_for "${family}"); fi
  fi
  python -m audio_compress.bin.superb results --metrics "${expdir}/superb" --out "${expdir}/superb" \
    --title "SUPERB: ${tag}" "${kind}" "${published[@]}"
  set_superb_ups
  local student_up="${method}_local=${expdir}/student.pt"
  if [ -d "${expdir}/pretrained" ] && printf '%s\n' "${superb_ups[@]}" | grep -qxF -- "${student_up}"; then
    # the shareable folder of stage 5, now with the student's SUPERB table in its model card
    # (only when stage 6 evaluated this very student: --superb_upstreams may leave it out)
    python -m audio_compress.bin.export --ckpt_dir "${expdir}/checkpoints" --which "${export_which}" \
      --pretrained "${expdir}/pretrained" --results "${expdir}/superb/results.json" --upstream "${method}_local"
  fi
}

# check_released: --upstream_ckpt (and --upstream_config) exist and load once through their s3prl entry
check_released() {
  if [ ! -f "${_released_ckpt}" ]; then
    echo "ERROR: --upstream_ckpt ${upstream_ckpt}: no such file ${_released_ckpt}" >&2
    return 1
  fi
  case "${upstream_config}" in
    ""|*.yaml|*.yml) ;;
    *) echo "ERROR: --upstream_config ${upstream_config}: expected the model-config YAML (*.yaml or *.yml)" >&2; return 1 ;;
  esac
  if [ -n "${upstream_config}" ] && [ ! -f "${upstream_config}" ]; then
    echo "ERROR: --upstream_config ${upstream_config}: no such file (the model-config YAML of --upstream_ckpt ${upstream_ckpt})" >&2
    return 1
  fi
  if ! python -m audio_compress.bin.superb check --upstream "${_released_spec}" --trust "${trust}"; then
    echo "ERROR: --upstream_ckpt ${upstream_ckpt} does not load through the s3prl entry ${_released_entry} (reason above)." >&2
    if [ -z "${upstream_config}" ]; then
      echo "       A Lightning release (STaR, ARMHuBERT, ARMwavLM) needs its model-config YAML: --upstream_config PATH" >&2
    fi
    return 1
  fi
}

# preflight: before stage ${stage} does any work, check the options, configs and inputs of every stage
# that will run (a config error must not surface after hours of data preparation or dumping).
preflight() {
  case "${method}" in star|armhubert|distilhubert) ;; *)
    echo "ERROR: --method ${method}: expected star, armhubert or distilhubert" >&2; return 1 ;;
  esac
  if "${use_dump}" && [ "${method}" = armhubert ]; then
    echo "ERROR: --use_dump true: ARMHuBERT distils attention maps, which a feature dump does not hold; use --use_dump false" >&2
    return 1
  fi
  [ -f "${conf}" ] || { echo "ERROR: --conf ${conf}: no such file (see conf/ of this recipe)" >&2; return 1; }
  if want_stage 2 && [ "${teacher}" = pretrain ]; then
    [ -f "${teacher_conf}" ] || { echo "ERROR: --teacher pretrain needs --teacher_conf (the pretraining YAML); '${teacher_conf}' is no such file" >&2; return 1; }
    set_pretrain_args
    local arch
    arch="$(python -m audio_compress.bin.pretrain_teacher "${pretrain_args[@]}" --check)"
    python -m audio_compress.bin.recipe_conf check_teacher --conf "${conf}" --teacher "${arch}" \
      --label "--teacher pretrain (${arch} from ${teacher_conf})" > /dev/null
  elif want_stage 2; then
    python -m audio_compress.bin.recipe_conf check_teacher --conf "${conf}" --teacher "${teacher}"
  elif { want_stage 3 || want_stage 4; } && [ -d "${expdir}/teacher" ]; then
    check_prepared_teacher
  fi
  local dev train
  dev="${datadir}/$(dname "${dev_set}")"
  train="${datadir}/${train_name}"
  if ! want_stage 1 && { want_stage 2 || want_stage 3 || want_stage 4; }; then
    require_input "${dev}/wav.scp" 1 "the dev data dir"
    if want_stage 3 || want_stage 4; then require_input "${train}/wav.scp" 1 "the training data dir"; fi
  fi
  if ! want_stage 2 && { want_stage 3 || want_stage 4; }; then
    require_input "${expdir}/teacher" 2 "the prepared teacher"
  fi
  if "${use_dump}" && ! want_stage 3 && want_stage 4; then
    require_input "${dumpdir}/${tag}/${train_name}" 3 "the teacher feature dump"
  fi
  if ! want_stage 4 && want_stage 5; then
    require_input "${expdir}/checkpoints/last.ckpt" 4 "the distillation checkpoints"
  fi
  if ! want_stage 5 && want_stage 6 && [ -z "${superb_upstreams}" ] && "${superb_student}"; then
    require_input "${expdir}/student.pt" 5 "the exported student"
  fi
  if want_stage 6; then
    set_superb_ups
    if [ ${#superb_ups[@]} -eq 0 ] && [ -z "${upstream_ckpt}" ]; then
      echo "ERROR: stage 6 has no upstream to evaluate (--superb_student false, no --upstream_ckpt or --superb_upstreams)" >&2
      return 1
    fi
    if [ -n "${upstream_ckpt}" ]; then check_released; fi
  fi
  if want_stage 3 || want_stage 4; then
    set_distill_args
    python -m audio_compress.bin.distill "${distill_args[@]}" --check
  fi
}
check_stages preflight

run_stage 0 "corpus: ${corpus_root}" corpus_stage
run_stage 1 "data preparation: ${corpus_root} -> ${datadir}/{${train_name},$(dname "${dev_set}"),...}" data_stage
run_stage 2 "teacher: ${teacher} -> ${expdir}/teacher" teacher_stage
if "${use_dump}"; then
  run_stage 3 "teacher feature dump -> ${dumpdir}/${tag}" dump_stage
elif want_stage 3; then
  log "Stage 3 skipped (use_dump=false: the teacher runs online during training)"
fi
run_stage 4 "distillation (${method}, ${conf}) -> ${expdir}/checkpoints" distill_stage
run_stage 5 "export -> ${expdir}/student.pt + s3prl check, ${expdir}/pretrained (model card)" export_stage
run_stage 6 "SUPERB (${superb_tasks}) -> ${expdir}/superb/<upstream>/<task>/metrics.json" superb_stage
run_stage 7 "SUPERB results -> ${expdir}/superb/results.{json,md,png}" results_stage

finish_recipe
