#!/usr/bin/env bash
# Update methods of a source-pretrained backbone on cross-domain few-shot targets (reference
# section 6): the study table conf/study.yaml (LP, FT, partial FT, DA, MixUp / CutMix, TTA) x
# {1, 5, 20} shots, 600 episodes each, on the BSCD-FSL targets. The source model is the ResNet-10
# trained with SL on miniImageNet (e.g. from egs/cdfsl's SL recipe): pass --checkpoint, or
# --backbone resnet10 --weights FILE for a plain state dict. Target roots come from recipes/db.sh.
# Options: bash run.sh --help
set -euo pipefail
cd "$(dirname "$0")"
exec bash ../../recipes/fewshot.sh \
  --conf conf/study.yaml \
  --targets "cropdisease eurosat isic chestx" \
  "$@"
