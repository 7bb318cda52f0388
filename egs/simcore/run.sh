#!/usr/bin/env bash
# SimCore on a fine-grained target with ImageNet-1k as the open set (reference 3): SimCLR R50 on
# the target, features, SimCore coreset (k 100, stopping rule) and a random baseline of the same
# size, SimCLR from scratch on target + coreset, linear evaluation.
# Roots: SIMCORE_DATA (targets, <name>/{train,test}/) and IMAGENET in recipes/db.sh, or
# --target_root / --open_root. Other targets: --target aircraft|cars|pets|dogs|flowers|...
# Options: bash run.sh --help
set -euo pipefail
cd "$(dirname "$0")"
exec bash ../../recipes/simcore.sh \
  --conf conf/simclr_r50.yaml \
  --coreset_conf conf/coreset.yaml \
  --target cub \
  --open_dataset imagenet \
  "$@"
