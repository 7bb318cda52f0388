#!/usr/bin/env bash
# MixCo on ImageNet, ResNet-50, 8 GPUs, 200 epochs: MoCo v2 + MixCo by default; conf/moco_r50.yaml for the baseline.
# Dataset root: IMAGENET in recipes/db.sh or --data_root. Other configurations: see conf/ and README.md.
# Options: bash run.sh --help
set -euo pipefail
cd "$(dirname "$0")"
exec bash ../../../recipes/vision_ssl.sh \
  --conf conf/mixco_moco_r50.yaml \
  --dataset imagenet \
  --seeds "0 1 2" \
  "$@"
