#!/usr/bin/env bash
# Shared shell helpers for recipe templates: dated log lines, stage gating, per-stage log files,
# a stage runner that fails on the first failing command, and the experiment-folder lock.

log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}

# want_stage N: true when stage <= N <= stop_stage.
want_stage() {
  [ "${stage}" -le "$1" ] && [ "$1" -le "${stop_stage}" ]
}

# failure_cause LOGFILE: the one line that says why a stage failed: the last Python exception
# line ("SomeError: message") or "ERROR: ..." line of the log (joined with the line after it when it
# ends with ":", which then holds the first item, e.g. the bad file), else its last non-empty line.
failure_cause() {
  tr '\r' '\n' < "$1" | awk '
    /^([A-Za-z_][A-Za-z0-9_.]*(Error|Exception|Exit|Interrupt)(:|$)|ERROR[: ]|Killed|Segmentation fault)/ {
      cause = $0; want_next = ($0 ~ /:[[:space:]]*$/); next
    }
    want_next && NF { sub(/^[[:space:]]+/, ""); cause = cause " " $0; want_next = 0 }
    NF { last = $0 }
    END { print (cause != "" ? cause : last) }'
}

# run_stage N "description" command [args...]
# Prints a dated banner and runs the command with stdout+stderr tee'd to ${expdir}/logs/stage<N>.log.
# The command runs in a subshell under `set -e`, so the first failing command inside a stage
# function fails the stage (not only its last command). On failure it prints the one-line cause,
# then the log tail, and exits with the stage's status. RECIPE_STAGE=N is exported to the stage.
run_stage() {
  local n="$1" what="$2"
  shift 2
  want_stage "${n}" || return 0
  local logdir="${expdir}/logs"
  mkdir -p "${logdir}"
  local logfile="${logdir}/stage${n}.log"
  log "==== Stage ${n}: ${what} ===="
  log "log: ${logfile}"
  {
    echo "# $(date '+%Y-%m-%dT%H:%M:%S') stage ${n}: ${what}"
    echo "# command: $*"
  } > "${logfile}"
  local start=${SECONDS} rc
  # Not `if ! (...)`: bash ignores `set -e` inside a condition, even in a subshell that sets it again.
  set +e
  (set -eEuo pipefail; export RECIPE_STAGE="${n}"; "$@") 2>&1 | tee -a "${logfile}"
  rc=${PIPESTATUS[0]}
  set -e
  if [ "${rc}" -ne 0 ]; then
    log "Stage ${n} FAILED (${what}), exit status ${rc}: $(failure_cause "${logfile}")" >&2
    log "Last lines of ${logfile}:" >&2
    tail -n 40 "${logfile}" >&2
    log "Stage ${n} FAILED. Fix the cause above, then resume with --stage ${n}." >&2
    exit "${rc}"
  fi
  log "Stage ${n} done in $((SECONDS - start)) s"
}

# check_stages FUNCTION: run the template's preflight FUNCTION (configs, options and inputs of the
# stages stage..stop_stage) before any stage works; on failure exit 1 naming the problem.
check_stages() {
  log "Checking the options, configs and inputs of stages ${stage}..${stop_stage}"
  local rc
  set +e  # as in run_stage: a condition would switch off `set -e` inside the check
  (set -eEuo pipefail; "$@")
  rc=$?
  set -e
  if [ "${rc}" -ne 0 ]; then
    log "Preflight check FAILED: no stage was run. Fix the options or configs named above and rerun." >&2
    exit 1
  fi
}

# require_input PATH STAGE WHAT: fail when PATH, made by STAGE (which this run skips), is missing.
require_input() {
  if [ ! -e "$1" ]; then
    echo "ERROR: $3 ($1) is missing. Stage $2 makes it, and this run starts at stage ${stage}: rerun with --stage $2." >&2
    return 1
  fi
}

# require_source HINT: fail unless the few-shot source model (${checkpoint}, else ${weights}) exists;
# HINT says which options give one.
require_source() {
  local file="${checkpoint:-${weights}}"
  if [ -z "${file}" ] || [ ! -f "${file}" ]; then
    echo "ERROR: source model '${file}' not found. Pass --checkpoint (a vision_ssl.bin.pretrain checkpoint)$1." >&2
    return 1
  fi
  echo "source model: ${file}"
}

# require_root DB_VAR OPTION PATH WHAT: fail with a message saying what to download and
# where to point it (DB_VAR in db.sh, or the recipe option --OPTION).
require_root() {
  local dbvar="$1" option="$2" path="$3" what="$4"
  if [ -z "${path}" ] || [ ! -d "${path}" ]; then
    echo "ERROR: dataset root '${path}' does not exist." >&2
    echo "       ${what}" >&2
    echo "       Set ${dbvar}=<folder> in recipes/db.sh (or the environment), or pass --${option} <folder>." >&2
    exit 1
  fi
}

# finish_recipe: closing line naming where results and logs went (absolute path).
finish_recipe() {
  log "Finished stages ${stage}..${stop_stage}. Results and logs: $(cd "${expdir}" && pwd)"
}

# make_expdir: create ${expdir}/logs and take the experiment lock (lock_expdir).
make_expdir() {
  mkdir -p "${expdir}/logs"
  lock_expdir
}

# lock_expdir: refuse to run while another recipe run works in ${expdir}. The lock is a kernel
# lock (flock) on ${expdir}/logs/recipe.lock held by this shell and the jobs it starts, so it
# ends with them: a killed run never leaves a stale lock. The file records the holder's pid.
lock_expdir() {
  local lockfile="${expdir}/logs/recipe.lock"
  if [ "${nnodes:-1}" -gt 1 ]; then
    log "no experiment lock: with --nnodes ${nnodes} every node runs this recipe in ${expdir}"
    return 0
  fi
  exec 9<>"${lockfile}"
  if ! flock -n 9; then
    echo "ERROR: ${expdir} is in use by another run ($(head -n 1 "${lockfile}" 2>/dev/null))." >&2
    echo "       Wait for it to finish, or give this run another --tag or --exp_root." >&2
    exit 1
  fi
  echo "pid $$ on $(hostname) since $(date '+%Y-%m-%dT%H:%M:%S'): $0" > "${lockfile}"
}

# init_expdir: fail when ${conf} is missing, default ${tag} to the config's file name, and create
# and lock ${expdir}=${exp_root}/${tag} (templates with one experiment config).
init_expdir() {
  if [ ! -f "${conf}" ]; then
    echo "ERROR: config '${conf}' not found (see conf/ of this recipe)" >&2
    exit 1
  fi
  [ -n "${tag}" ] || tag="$(basename "${conf}" .yaml)"
  expdir="${exp_root}/${tag}"
  make_expdir
}
