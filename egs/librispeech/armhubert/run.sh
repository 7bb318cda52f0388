#!/usr/bin/env bash
# armhubert distillation on LibriSpeech (960 h by default). Dataset root: LIBRISPEECH in recipes/db.sh
# or --corpus_root. Other configurations: see conf/ and README.md. Options: bash run.sh --help
set -euo pipefail
cd "$(dirname "$0")"
exec bash ../../../recipes/distill.sh \
  --method armhubert \
  --student armhubert \
  --conf conf/armhubert_960h.yaml \
  --teacher hubert_base \
  --train_sets "train-clean-100 train-clean-360 train-other-500" \
  --dev_set dev-clean \
  --test_sets "test-clean" \
  --nj 16 \
  "$@"
