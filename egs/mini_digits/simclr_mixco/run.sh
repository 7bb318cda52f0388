#!/usr/bin/env bash
# Mini SimCLR + MixCo recipe: scikit-learn's handwritten digits (real data, shipped with the package),
# exported to an ImageFolder tree at 16x16; tiny ResNet; two seeds; every stage on CPU in minutes.
# Options: bash run.sh --help
set -euo pipefail
cd "$(dirname "$0")"
exec bash ../../../recipes/vision_ssl.sh \
  --conf conf/simclr_mixco.yaml \
  --dataset imagefolder \
  --data_root data/digits \
  --make_digits true \
  --digits_size 16 \
  --seeds "0 1" \
  --baselines "random_init pixels" \
  "$@"
