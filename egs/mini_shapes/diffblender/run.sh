#!/usr/bin/env bash
# Mini twin of egs/coco/diffblender: synthetic shapes at 32x32 made on the fly (coloured
# rectangles and ellipses with their boxes, sketches and palettes), a tiny base trained on them by
# stage 1 and then frozen, the DiffBlender networks trained on top, and the box alignment (IoU of
# the requested box with the drawn shape) with the box condition against text only. All on CPU.
# Options: bash run.sh --help
set -euo pipefail
cd "$(dirname "$0")"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"  # tiny models: two threads (the batch-32 adapter steps use both)
exec bash ../../../recipes/diffblender.sh \
  --conf conf/diffblender.yaml \
  --make_base true \
  --sample_sets "none box all" \
  --num_eval 256 \
  --fid_features random \
  "$@"
