#!/usr/bin/env bash
# The embedded-default demo, no data, no download, no GPU. Measured 2026-12-07 on 2 idle Intel Xeon cores: 2 min 48 s
# (set-up excluded; issue 10's first version: 70 min); seeds 0-2: overlap IoU 86.6-89.8 %, CT sample 0.91-1.02x its
# true volume (benchmarks/results/demo_cpu.json; the digits differ by CPU, threads and seed).
#  1. 2D: synthesize overlapping chromosomes → train a small U-Net → evaluate on the held-out test split →
#     predict on images;
#  2. 3D: train the small CTV delineation model (the thesis' final network at 1/4 width, no refinement) on CT-like
#     phantoms → evaluate → write a fresh 72×256×256 sample phantom (DICOM, zipped DICOM, NIfTI, HDF5)
#     and delineate it.
# Both models are DEMOS trained on synthetic data — not clinical models. Serve them with
#   medseg serve --model demo/runs/demo_unet --model demo/runs/ctv_phantom_demo
set -euo pipefail
# The seed of both trainings (train.seed: initial weights, augmentations, batch order): `--seed N` or
# MEDSEG_DEMO_SEED=N, default 0. The synthesized pairs, the phantoms, the splits and the sample volume stay
# the same whatever the seed, so seeds differ by training randomness only.
SEED="${MEDSEG_DEMO_SEED:-0}"
while [ $# -gt 0 ]; do
  case "$1" in
    --seed) SEED="${2:?--seed needs a number}"; shift 2 ;;
    --seed=*) SEED="${1#--seed=}"; shift ;;
    -h|--help) echo "usage: bash scripts/demo.sh [--seed N]   (or MEDSEG_DEMO_SEED=N; MEDSEG_DEMO_DIR=folder, default demo/)"; exit 0 ;;
    *) echo "demo.sh: unknown argument $1 (usage: bash scripts/demo.sh [--seed N])" >&2; exit 2 ;;
  esac
done
case "$SEED" in ''|*[!0-9]*) echo "demo.sh: the seed must be a whole number >= 0, got '$SEED'" >&2; exit 2 ;; esac
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
OUT="${MEDSEG_DEMO_DIR:-demo}"
case "$OUT" in /*) HOME_DEFAULT="$OUT/home" ;; *) HOME_DEFAULT="$ROOT/$OUT/home" ;; esac
export MEDSEG_HOME="${MEDSEG_HOME:-$HOME_DEFAULT}"

stage() { echo; echo "== [$(date +%H:%M:%S)] $*"; }

# 1. overlapping chromosomes (2D, 4 classes); 12 chromosomes as in Pommier's set (66 pairs, alpha = the one
#    earlier in the karyotype)
stage "1/8 synthesizing 1,600 overlapping chromosome pairs (94×93) from 12 chromosomes (~10 s)"
medseg data synth "$OUT/pairs.h5" --n-pairs 1600 --n-chromosomes 12 --seed 0
stage "2/8 training the 2D demo U-Net: 36 epochs of 30 batches of 8 (~2 min; one line per epoch; seed $SEED)"
medseg train configs/chromosomes/demo.yaml --fold 0 --data "$OUT/pairs.h5" --set output.root="$OUT/runs" \
  --set train.seed="$SEED"
stage "3/8 evaluating it on the 320 held-out test pairs (~15 s)"
medseg evaluate "$OUT/runs/demo_unet"
stage "4/8 exporting 3 images and predicting them (~5 s)"
medseg data export "$OUT/pairs.h5" "$OUT/images" --count 3 --start 700
medseg predict "$OUT/runs/demo_unet" "$OUT"/images/images/*.png -o "$OUT/predictions"

# 2. CT target delineation (3D) on the phantom — DEMO DATA
stage "5/8 writing 16 CT-like phantoms and training the 3D demo model: 60 epochs of 11 volumes (~1.5 min; seed $SEED)"
medseg train configs/ctv/phantom_demo.yaml --fold 0 --set output.root="$OUT/runs" --set train.seed="$SEED"
stage "6/8 evaluating it on the 3 held-out phantoms (~10 s)"
medseg evaluate "$OUT/runs/ctv_phantom_demo"
# A sample volume to upload: a phantom case the model never saw (seed 1000), full size, in every format.
stage "7/8 writing a fresh full-size sample volume, 72×256×256 (DICOM, zip, NIfTI, HDF5; ~10 s)"
medseg data phantom "$OUT/sample_volume" --n 1 --seed 1000 --overwrite
python -c "import shutil, sys; shutil.make_archive(sys.argv[1], 'zip', sys.argv[2])" \
  "$OUT/sample_volume/case_000_dicom" "$OUT/sample_volume/dicom/case_000"
stage "8/8 delineating the sample volume (~10 s; the true target volume is 66.5 ml)"
medseg predict "$OUT/runs/ctv_phantom_demo" "$OUT/sample_volume/nifti/case_000_image.nii.gz" -o "$OUT/predictions_3d"

echo
echo "Done (demo models trained on synthetic data — not clinical models)."
echo "  2D report: $OUT/runs/demo_unet/evaluation/report.md        predictions: $OUT/predictions/"
echo "  3D report: $OUT/runs/ctv_phantom_demo/evaluation/report.md predictions: $OUT/predictions_3d/"
echo "  sample volume to upload: $OUT/sample_volume/case_000_dicom.zip (or nifti/, hdf5/)"
echo "  web system: MEDSEG_HOME=$MEDSEG_HOME medseg serve --model $OUT/runs/demo_unet --model $OUT/runs/ctv_phantom_demo"
