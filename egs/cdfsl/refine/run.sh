#!/usr/bin/env bash
# ReFine: re-randomization before fine-tuning for cross-domain few-shot learning (reference
# section 5). FT vs ReFine on the BSCD-FSL targets with the ResNet-10 trained with SL on
# miniImageNet: pass --checkpoint (e.g. from egs/cdfsl's SL recipe), or --backbone resnet10
# --weights FILE for a plain state dict. Target roots come from recipes/db.sh.
# Options: bash run.sh --help
set -euo pipefail
cd "$(dirname "$0")"
exec bash ../../../recipes/fewshot.sh \
  --conf conf/refine.yaml \
  --targets "cropdisease eurosat isic chestx" \
  "$@"
