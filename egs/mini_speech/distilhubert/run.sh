#!/usr/bin/env bash
# Mini distilhubert recipe: synthesized LibriSpeech-layout corpus, tiny teacher and student, CPU.
# Every stage runs in minutes; stages 6-7 run mini SUPERB (PR, KS, SID, IC) for the student,
# the teacher and fbank and print the results table. Options: bash run.sh --help
set -euo pipefail
cd "$(dirname "$0")"
exec bash ../../../recipes/distill.sh \
  --method distilhubert \
  --student tiny_distil \
  --teacher tiny_hubert \
  --make_corpus true \
  --corpus_root corpus \
  --train_sets train-mini \
  --dev_set dev-mini \
  --test_sets test-mini \
  --nj 2 \
  --check_audio full \
  --superb_mini true \
  --superb_tasks "pr ks sid ic" \
  --superb_device cpu \
  --superb_nj 2 \
  "$@"
