#!/usr/bin/env bash
# DiffBlender on COCO 2017 with a frozen Stable Diffusion v1.4 (diffusers layout): sketch, box,
# keypoint and colour conditions (add depth and style once data.depth_dir / data.style_model are
# set, see conf/diffblender_sd14.yaml), 512x512. Needs COCO and STABLE_DIFFUSION in recipes/db.sh
# (or --data_root / --base). Options: bash run.sh --help
set -euo pipefail
cd "$(dirname "$0")"
exec bash ../../../recipes/diffblender.sh \
  --conf conf/diffblender_sd14.yaml \
  --sample_sets "all box sketch color none" \
  --num_eval 5000 \
  --fid_features inception \
  "$@"
