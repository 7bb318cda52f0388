#!/usr/bin/env bash
# Shared shell helpers for recipe templates: dated log lines, stage gating,
# per-stage log files, and printing the tail of a failed stage's log.

log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}

# want_stage N: true when stage <= N <= stop_stage.
want_stage() {
  [ "${stage}" -le "$1" ] && [ "$1" -le "${stop_stage}" ]
}

# run_stage N "description" command [args...]
# Prints a dated banner, runs the command with stdout+stderr tee'd to
# ${expdir}/logs/stage<N>.log, and on failure prints the log tail and exits.
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
  local start=${SECONDS}
  if ! (set -o pipefail; "$@" 2>&1 | tee -a "${logfile}"); then
    log "Stage ${n} FAILED (${what}). Last lines of ${logfile}:"
    tail -n 40 "${logfile}" >&2
    exit 1
  fi
  log "Stage ${n} done in $((SECONDS - start)) s"
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

# init_expdir: fail when ${conf} is missing, default ${tag} to the config's file name, and create
# ${expdir}=${exp_root}/${tag} with its logs/ folder (templates with one experiment config).
init_expdir() {
  if [ ! -f "${conf}" ]; then
    echo "ERROR: config '${conf}' not found (see conf/ of this recipe)" >&2
    exit 1
  fi
  [ -n "${tag}" ] || tag="$(basename "${conf}" .yaml)"
  expdir="${exp_root}/${tag}"
  mkdir -p "${expdir}/logs"
}
