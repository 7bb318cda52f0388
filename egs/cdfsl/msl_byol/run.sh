#!/usr/bin/env bash
# MSL: (1 - gamma) CE(miniImageNet) + gamma BYOL(unlabeled target), gamma 0.875; one model per target.
# Roots: MINIIMAGENET and the targets' variables (CROPDISEASE, EUROSAT, ISIC, CHESTX, ...) in
# recipes/db.sh, or --source_root / --target_roots "name=path ...". Configs: ../conf/.
# Options: bash run.sh --help
set -euo pipefail
cd "$(dirname "$0")"
exec bash ../../../recipes/cdfsl.sh \
  --schemes msl_byol \
  --conf_dir ../conf \
  "$@"
