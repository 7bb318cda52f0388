#!/usr/bin/env bash
# Activates the toolkit environment for a recipe. Sourced by every template.
# MAIN_ROOT is the repository root (this file lives in MAIN_ROOT/recipes).
MAIN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export MAIN_ROOT
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f "${MAIN_ROOT}/.venv/bin/activate" ]; then
  # shellcheck disable=SC1091
  . "${MAIN_ROOT}/.venv/bin/activate"
fi
export PYTHONPATH="${MAIN_ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
export LC_ALL=C
export PYTHONIOENCODING=UTF-8
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
if ! python -c "import audio_compress" 2>/dev/null; then
  echo "ERROR: cannot import audio_compress with $(command -v python)." >&2
  echo "       Run 'make setup' in ${MAIN_ROOT} first." >&2
  exit 1
fi
