#!/usr/bin/env bash
# SupCon on CIFAR-100, ResNet-18, two views (the SelfCon paper's baseline); --conf conf/supcon_s_r18.yaml for SupCon-S.
# Dataset root: CIFAR100 in recipes/db.sh or --data_root. Other configurations: see conf/ and README.md.
# Options: bash run.sh --help
set -euo pipefail
cd "$(dirname "$0")"
exec bash ../../../recipes/vision_ssl.sh \
  --conf conf/supcon_r18.yaml \
  --dataset cifar100 \
  --seeds "0 1 2" \
  "$@"
