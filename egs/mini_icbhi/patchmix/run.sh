#!/usr/bin/env bash
# Mini twin of egs/icbhi/patchmix: a synthesized ICBHI-format corpus (100 recordings, 460 cycles whose
# classes carry their acoustic signatures: crackle transients, 100-1000 Hz wheeze tones, four device
# responses), a tiny random-init AST, the three methods over 3 seeds under both selection protocols
# (paper: best epoch on test; clean: best epoch on 20 % of the training patients held out).
# Wall time (stages 0-5, measured 2026-12-06 on the 2-core CPU machine, shared with other jobs at load average
# about 2): 9.7 min, of which training 7.7 min (18 runs), corpus 28 s, features 10 s, evaluation 21 s,
# real samples 21 s. Under heavier sharing (load average 5-10) the same run took 35.9 min.
# Stage 5 runs the trained models on the real ICBHI samples of the test data when present
# ($COMPACT_SSL_TEST_DATA, else <repo>/.test-data, else ../shared/data beside the checkout, as the tests look;
# `make test-data` fetches them): a smoke test of the real format, not a score; --real_samples "" skips it.
# Options: bash run.sh --help
set -euo pipefail
real_samples=""
if [ -n "${COMPACT_SSL_TEST_DATA:-}" ] && [ -d "${COMPACT_SSL_TEST_DATA}/icbhi_samples" ]; then
  real_samples="$(cd "${COMPACT_SSL_TEST_DATA}/icbhi_samples" && pwd)"  # before the cd below: may be relative
fi
cd "$(dirname "$0")"
if [ -z "${COMPACT_SSL_TEST_DATA:-}" ]; then
  for test_data in ../../../.test-data ../../../../shared/data; do
    if [ -d "${test_data}" ]; then
      if [ -d "${test_data}/icbhi_samples" ]; then real_samples="$(cd "${test_data}/icbhi_samples" && pwd)"; fi
      break
    fi
  done
fi
exec bash ../../../recipes/icbhi.sh \
  --tag ast_tiny_patchmix \
  --make_corpus true \
  --corpus_root corpus \
  --confs "conf/ce.yaml conf/patchmix.yaml conf/patchmix_cl.yaml" \
  --seeds "1 2 3" \
  --val_fraction 0.2 \
  --real_samples "${real_samples}" \
  "$@"
