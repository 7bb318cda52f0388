#!/usr/bin/env bash
# SL: cross-entropy on the labeled miniImageNet source (ResNet-10, 224x224, 1000 epochs); one model,
# evaluated on every target.
# Roots: MINIIMAGENET and the targets' variables (CROPDISEASE, EUROSAT, ISIC, CHESTX, ...) in
# recipes/db.sh, or --source_root / --target_roots "name=path ...". Configs: ../conf/.
# Options: bash run.sh --help
set -euo pipefail
cd "$(dirname "$0")"
exec bash ../../../recipes/cdfsl.sh \
  --schemes sl \
  --conf_dir ../conf \
  "$@"
