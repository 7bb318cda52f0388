#!/usr/bin/env bash
# Mini twin of egs/icbhi/patchmix: a synthesized ICBHI-format corpus (breathing-like noise with
# crackles and wheezes), a tiny random-init AST, all three methods over 2 seeds, on CPU in minutes.
# Options: bash run.sh --help
set -euo pipefail
cd "$(dirname "$0")"
exec bash ../../../recipes/icbhi.sh \
  --tag ast_tiny_patchmix \
  --make_corpus true \
  --corpus_root corpus \
  --confs "conf/ce.yaml conf/patchmix.yaml conf/patchmix_cl.yaml" \
  --seeds "1 2" \
  --val_fraction 0.2 \
  "$@"
