#!/usr/bin/env bash
# MixCo on TinyImageNet, ResNet-18 at 224: MoCo v2 + MixCo by default; conf/moco_r18.yaml, conf/mixco_simclr_r18.yaml and conf/simclr_r18.yaml for the other rows.
# Dataset root: TINYIMAGENET in recipes/db.sh or --data_root. Other configurations: see conf/ and README.md.
# Options: bash run.sh --help
set -euo pipefail
cd "$(dirname "$0")"
exec bash ../../../recipes/vision_ssl.sh \
  --conf conf/mixco_moco_r18.yaml \
  --dataset tinyimagenet \
  --seeds "0 1 2" \
  "$@"
