#!/usr/bin/env bash
# Mini update-method study: scikit-learn's digits, classes 0-4 as the labeled source (tiny
# ResNet, supervised, 5 epochs) and classes 5-9 as the few-shot target; the grid of
# conf/study.yaml; every stage on CPU in about a minute.
# Options: bash run.sh --help
set -euo pipefail
cd "$(dirname "$0")"
exec bash ../../../recipes/fewshot.sh \
  --conf conf/study.yaml \
  --targets folder \
  --pretrain_conf conf/sl.yaml \
  --make_digits true \
  --data_root data/digits \
  --device cpu \
  --baselines "random_init pixels" \
  "$@"
