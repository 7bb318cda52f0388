#!/usr/bin/env bash
# Mini ReFine: scikit-learn's digits, classes 0-4 as the labeled source (the source model of
# ../fsl_update, trained here unless --checkpoint is given) and classes 5-9 as the target;
# FT vs ReFine; every stage on CPU in under a minute.
# Options: bash run.sh --help
set -euo pipefail
cd "$(dirname "$0")"
exec bash ../../../recipes/fewshot.sh \
  --conf conf/refine.yaml \
  --targets folder \
  --pretrain_conf ../fsl_update/conf/sl.yaml \
  --make_digits true \
  --data_root data/digits \
  --device cpu \
  --baselines "random_init pixels" \
  "$@"
