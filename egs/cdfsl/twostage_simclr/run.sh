#!/usr/bin/env bash
# Two-stage SSL: SL on miniImageNet (reused from ../sl), then SimCLR on each target from its weights.
# Roots: MINIIMAGENET and the targets' variables (CROPDISEASE, EUROSAT, ISIC, CHESTX, ...) in
# recipes/db.sh, or --source_root / --target_roots "name=path ...". Configs: ../conf/.
# Options: bash run.sh --help
set -euo pipefail
cd "$(dirname "$0")"
exec bash ../../../recipes/cdfsl.sh \
  --schemes twostage_simclr \
  --conf_dir ../conf \
  --sl_expdir ../sl/exp/sl \
  "$@"
