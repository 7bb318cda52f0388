#!/usr/bin/env bash
# AST + Patch-Mix contrastive learning on ICBHI 2017 (official 60/40 split, 4 classes), 5 seeds.
# ICBHI in recipes/db.sh (or --corpus_root) points at the unzipped database with its split file;
# --pretrained points at the AudioSet AST (transformers folder or audioset_10_10_0.4593.pth).
# All three methods of the paper: --confs "conf/ce.yaml conf/patchmix.yaml conf/patchmix_cl.yaml".
# Options: bash run.sh --help
set -euo pipefail
cd "$(dirname "$0")"
exec bash ../../../recipes/icbhi.sh \
  --tag ast_patchmix \
  --confs "conf/patchmix_cl.yaml" \
  --seeds "1 2 3 4 5" \
  "$@"
