#!/usr/bin/env bash
# Mini fixed-episode recipe: Omniglot's 20 official 20-way 1-shot runs (Lake et al.), scored with a
# linear probe on a tiny ResNet pretrained (supervised, 10 epochs) on the "background small 1"
# alphabets, next to the raw-pixel nearest-neighbour baseline; every stage on CPU in about a minute.
# Omniglot folder (all_runs.zip + images_background_small1.zip, the python/ folder of
# github.com/brendenlake/omniglot): $OMNIGLOT, else the test data's omniglot/ ($COMPACT_SSL_TEST_DATA,
# else .test-data or ../shared/data beside the checkout), else --omniglot <folder>.
# Options: bash run.sh --help
set -euo pipefail
cd "$(dirname "$0")"
root="$(cd ../../.. && pwd)"
omniglot_dir="${OMNIGLOT:-}"
if [ -z "${omniglot_dir}" ]; then
  if [ -n "${COMPACT_SSL_TEST_DATA:-}" ]; then
    candidates=("${COMPACT_SSL_TEST_DATA}/omniglot")
  else
    candidates=("${root}/.test-data/omniglot" "${root}/../shared/data/omniglot")
  fi
  for d in "${candidates[@]}"; do
    if [ -f "${d}/all_runs.zip" ] || [ -d "${d}/all_runs" ]; then omniglot_dir="${d}"; break; fi
  done
fi
exec bash ../../../recipes/fixed_episodes.sh \
  --conf conf/lp.yaml \
  --updates lp \
  --omniglot "${omniglot_dir}" \
  --background images_background_small1 \
  --pretrain_conf conf/sl.yaml \
  --data_root data/omniglot \
  --pixel_nn true \
  --device cpu \
  --baselines "random_init pixels" \
  "$@"
