#!/usr/bin/env bash
# armhubert distillation on LibriSpeech (960 h by default). Dataset root: LIBRISPEECH in recipes/db.sh
# or --corpus_root. The config (--conf) gives the student and the teacher family (random weights by
# name); the released teacher weights: --teacher /path/to/<fairseq or unilm .pt>. Other configurations:
# see conf/ (WavLM teacher: conf/armwavlm_s_960h.yaml, conf/armwavlm_s_100h.yaml) and README.md. Options: bash run.sh --help
set -euo pipefail
cd "$(dirname "$0")"
exec bash ../../../recipes/distill.sh \
  --method armhubert \
  --conf conf/armhubert_960h.yaml \
  --train_sets "train-clean-100 train-clean-360 train-other-500" \
  --dev_set dev-clean \
  --test_sets "test-clean" \
  --nj 16 \
  "$@"
