#!/usr/bin/env bash
# MixCo on CIFAR-100, ResNet-18 at 224: MoCo v2 + MixCo by default; conf/moco_r18.yaml for the baseline.
# Dataset root: CIFAR100 in recipes/db.sh or --data_root. Other configurations: see conf/ and README.md.
# Options: bash run.sh --help
set -euo pipefail
cd "$(dirname "$0")"
exec bash ../../../recipes/vision_ssl.sh \
  --conf conf/mixco_moco_r18.yaml \
  --dataset cifar100 \
  --seeds "0 1 2" \
  "$@"
