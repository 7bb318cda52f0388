#!/usr/bin/env bash
# SelfCon-S on CIFAR-100, ResNet-18 (1000 epochs, batch 1024, exit after layer2 with an fc sub-network); --conf conf/selfcon_m_r18.yaml for SelfCon-M.
# Dataset root: CIFAR100 in recipes/db.sh or --data_root. Other configurations: see conf/ and README.md.
# Options: bash run.sh --help
set -euo pipefail
cd "$(dirname "$0")"
exec bash ../../../recipes/vision_ssl.sh \
  --conf conf/selfcon_s_r18.yaml \
  --dataset cifar100 \
  --seeds "0 1 2" \
  "$@"
