#!/usr/bin/env bash
# Two-stage MSL: SL on miniImageNet (reused from ../sl), then MSL-SimCLR on each target from its weights.
# Roots: MINIIMAGENET and the targets' variables (CROPDISEASE, EUROSAT, ISIC, CHESTX, ...) in
# recipes/db.sh, or --source_root / --target_roots "name=path ...". Configs: ../conf/.
# Options: bash run.sh --help
set -euo pipefail
cd "$(dirname "$0")"
exec bash ../../../recipes/cdfsl.sh \
  --schemes twostage_msl_simclr \
  --conf_dir ../conf \
  --sl_expdir ../sl/exp/sl \
  "$@"
