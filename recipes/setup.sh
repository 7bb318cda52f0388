#!/usr/bin/env bash
# Common preamble of every recipe template, sourced right after parse_options.sh (without
# arguments, so it sees the template's remaining positional arguments): refuses leftover
# positional arguments, then loads the environment (path.sh), launchers (cmd.sh), helpers
# (utils.sh) and dataset roots (recipes/db.sh, then a recipe-local ./db.sh if present).
if [ $# -ne 0 ]; then
  echo "$0: unexpected positional arguments: $*" >&2
  exit 1
fi

recipe_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "${recipe_dir}/path.sh"
. "${recipe_dir}/cmd.sh"
. "${recipe_dir}/utils.sh"
. "${recipe_dir}/db.sh"
if [ -f ./db.sh ]; then
  . ./db.sh
fi
