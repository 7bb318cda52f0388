#!/usr/bin/env bash
# SSL: SimCLR (temperature 1.0) on the unlabeled 20 % of each target; one model per target.
# Roots: MINIIMAGENET and the targets' variables (CROPDISEASE, EUROSAT, ISIC, CHESTX, ...) in
# recipes/db.sh, or --source_root / --target_roots "name=path ...". Configs: ../conf/.
# Options: bash run.sh --help
set -euo pipefail
cd "$(dirname "$0")"
exec bash ../../../recipes/cdfsl.sh \
  --schemes ssl_simclr \
  --conf_dir ../conf \
  "$@"
