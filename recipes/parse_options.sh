#!/usr/bin/env bash
# Kaldi parse_options.sh semantics, written for this toolkit.
#
# Source this file after declaring every option variable with its default:
#
#     stage=0          # first stage to run
#     stop_stage=100   # last stage to run
#     . recipes/parse_options.sh
#
# * `--name value` overrides a variable that is already defined; dashes in the
#   name become underscores (`--stop-stage` == `--stop_stage`).
# * An option naming an undefined variable is an error.
# * If the old value is true/false, the new one must be true/false as well.
# * `--config FILE` sources FILE first, so explicit flags given after it win.
# * `--help`/`-h` lists every option declared in the calling script (lines of
#   the form `name=value  # comment` above the line that sources this file)
#   with its current value and comment, then exits 0 (names starting with `_` are
#   internal and not listed).
# * `--name=value` is rejected, as in Kaldi.
# * Parsing stops at the first argument that is not an option; the rest stay
#   in "$@".

__po_script="${0}"
# The usage line names what the user ran: a template called by egs/<corpus>/<method>/run.sh (which
# cds into its folder and execs the template) is shown as that run.sh.
__po_usage="${0}"
if [ "$(basename "$(dirname "${0}")")" = recipes ] && [ -f ./run.sh ]; then
  __po_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
  __po_usage="$(pwd -P)/run.sh"
  __po_usage="${__po_usage#"${__po_root}"/}"
fi

__po_print_help() {
  local line name value comment
  echo "Usage: bash ${__po_usage} [options]"
  [ -n "${help_message:-}" ] && echo "${help_message}"
  echo "Options (current value, then description):"
  while IFS= read -r line; do
    [[ "${line}" =~ parse_options\.sh ]] && break
    if [[ "${line}" =~ ^([a-zA-Z][a-zA-Z0-9_]*)=([^#]*)(#[[:space:]]*(.*))?$ ]]; then
      name="${BASH_REMATCH[1]}"
      comment="${BASH_REMATCH[4]}"
      value="${!name-}"
      printf '  --%-22s %-28s %s\n' "${name}" "\"${value}\"" "${comment}"
    fi
  done < "${__po_script}"
}

while true; do
  [ $# -eq 0 ] && break
  case "$1" in
    --help|-h)
      __po_print_help
      exit 0 ;;
    --*=*)
      echo "${__po_usage}: options must be of the form --name value, not '$1'" >&2
      exit 1 ;;
    --*)
      __po_name="${1#--}"
      __po_name="${__po_name//-/_}"
      if [ $# -lt 2 ]; then
        echo "${__po_usage}: option '$1' needs a value" >&2
        exit 1
      fi
      if [ "${__po_name}" = "config" ]; then
        if [ ! -f "$2" ]; then
          echo "${__po_usage}: --config: no such file '$2'" >&2
          exit 1
        fi
        # shellcheck disable=SC1090
        . "$2"
        shift 2
        continue
      fi
      if [[ ! "${__po_name}" =~ ^[a-zA-Z_][a-zA-Z0-9_]*$ ]] || [ -z "${!__po_name+x}" ]; then
        echo "${__po_usage}: invalid option '$1' (no variable '${__po_name}' is defined; see --help)" >&2
        exit 1
      fi
      __po_old="${!__po_name}"
      if [ "${__po_old}" = "true" ] || [ "${__po_old}" = "false" ]; then
        if [ "$2" != "true" ] && [ "$2" != "false" ]; then
          echo "${__po_usage}: option '$1' takes true or false, got '$2'" >&2
          exit 1
        fi
      fi
      printf -v "${__po_name}" '%s' "$2"
      shift 2 ;;
    *)
      break ;;
  esac
done
unset __po_name __po_old __po_root
true
