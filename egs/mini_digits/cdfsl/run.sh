#!/usr/bin/env bash
# Mini CD-FSL schemes on scikit-learn's handwritten digits (real data, shipped with the package):
# source = digits 0-4 (labeled), target = digits 5-9 exported as a class-folder tree ("folder":
# its unlabeled 20 % for SSL / MSL, 5-way episodes from its labeled 80 %); 16x16, tiny ResNet,
# short schedules, 20 episodes; all seven schemes (SL trained once) on CPU in a few minutes, one
# table in exp/schemes/results.md. One scheme: --schemes msl_simclr (table in exp/msl_simclr/).
# Options: bash run.sh --help
set -euo pipefail
cd "$(dirname "$0")"
exec bash ../../../recipes/cdfsl.sh \
  --schemes "sl ssl_simclr ssl_byol msl_simclr msl_byol twostage_simclr twostage_msl_simclr" \
  --conf_dir conf \
  --source imagefolder \
  --source_root data/source \
  --targets folder \
  --target_roots "folder=data/target/train" \
  --make_digits true \
  --digits_target_dir data/target \
  --digits_size 16 \
  --episodes 20 \
  --baselines "random_init pixels" \
  "$@"
