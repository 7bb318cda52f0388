#!/usr/bin/env bash
# Mini SimCore: target = 40 train images of each of the digits 3, 5 and 8 (scikit-learn's digits,
# 16x16); open set = every other digits train image plus, where the Omniglot zips are found
# (`make test-data` puts them in .test-data/omniglot; also $COMPACT_SSL_TEST_DATA/omniglot or
# ../shared/data/omniglot beside the checkout), 5,840 Omniglot characters; tiny ResNet SimCLR; every stage on CPU in a few minutes.
# Options: bash run.sh --help
set -euo pipefail
cd "$(dirname "$0")"
root="$(cd ../../.. && pwd)"
omniglot_dir=""
for d in ${COMPACT_SSL_TEST_DATA:+"${COMPACT_SSL_TEST_DATA}/omniglot"} "${root}/.test-data/omniglot" "${root}/../shared/data/omniglot"; do
  if [ -d "${d}" ]; then omniglot_dir="${d}"; break; fi
done
exec bash ../../../recipes/simcore.sh \
  --conf conf/simclr.yaml \
  --coreset_conf conf/coreset.yaml \
  --target digits358 \
  --make_mini true \
  --data_dir data \
  --mini_target_classes "3 5 8" \
  --mini_per_class 40 \
  --omniglot "${omniglot_dir}" \
  --feature_args "--num_workers 0 --batch_size 512" \
  --baselines "random_init pixels" \
  "$@"
