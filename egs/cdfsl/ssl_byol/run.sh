#!/usr/bin/env bash
# SSL: BYOL (Adam 3e-4, EMA 0.99) on the unlabeled 20 % of each target; one model per target.
# Roots: MINIIMAGENET and the targets' variables (CROPDISEASE, EUROSAT, ISIC, CHESTX, ...) in
# recipes/db.sh, or --source_root / --target_roots "name=path ...". Configs: ../conf/.
# Options: bash run.sh --help
set -euo pipefail
cd "$(dirname "$0")"
exec bash ../../../recipes/cdfsl.sh \
  --schemes ssl_byol \
  --conf_dir ../conf \
  "$@"
