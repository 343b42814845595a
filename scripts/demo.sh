#!/usr/bin/env bash
# The embedded-default demo: synthesize overlapping chromosomes → train a small U-Net on the CPU →
# evaluate on the held-out test split → predict on images. No data, no download, no GPU; a few minutes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
OUT="${MEDSEG_DEMO_DIR:-demo}"
export MEDSEG_HOME="${MEDSEG_HOME:-$ROOT/$OUT/home}"

medseg data synth "$OUT/pairs.h5" --n-pairs 800 --seed 0
medseg train configs/chromosomes/demo.yaml --fold 0 --data "$OUT/pairs.h5" --set output.root="$OUT/runs"
medseg evaluate "$OUT/runs/demo_unet"
medseg data export "$OUT/pairs.h5" "$OUT/images" --count 3 --start 700
medseg predict "$OUT/runs/demo_unet" "$OUT"/images/images/*.png -o "$OUT/predictions"
echo
echo "Done. Report: $OUT/runs/demo_unet/evaluation/report.md   Predictions: $OUT/predictions/"
