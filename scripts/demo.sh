#!/usr/bin/env bash
# The embedded-default demo, no data, no download, no GPU (about 10 minutes on 2 CPU cores):
#  1. 2D: synthesize overlapping chromosomes → train a small U-Net → evaluate on the held-out test split →
#     predict on images;
#  2. 3D: train the small CTV delineation model (the thesis' final network at 1/4 width) on CT-like
#     phantoms → evaluate → write a fresh 72×256×256 sample phantom (DICOM, zipped DICOM, NIfTI, HDF5)
#     and delineate it.
# Both models are DEMOS trained on synthetic data — not clinical models. Serve them with
#   medseg serve --model demo/runs/demo_unet --model demo/runs/ctv_phantom_demo
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
OUT="${MEDSEG_DEMO_DIR:-demo}"
export MEDSEG_HOME="${MEDSEG_HOME:-$ROOT/$OUT/home}"

# 1. overlapping chromosomes (2D, 4 classes)
medseg data synth "$OUT/pairs.h5" --n-pairs 800 --seed 0
medseg train configs/chromosomes/demo.yaml --fold 0 --data "$OUT/pairs.h5" --set output.root="$OUT/runs"
medseg evaluate "$OUT/runs/demo_unet"
medseg data export "$OUT/pairs.h5" "$OUT/images" --count 3 --start 700
medseg predict "$OUT/runs/demo_unet" "$OUT"/images/images/*.png -o "$OUT/predictions"

# 2. CT target delineation (3D) on the phantom — DEMO DATA
medseg train configs/ctv/phantom_demo.yaml --fold 0 --set output.root="$OUT/runs"
medseg evaluate "$OUT/runs/ctv_phantom_demo"
# A sample volume to upload: a phantom case the model never saw (seed 1000), full size, in every format.
medseg data phantom "$OUT/sample_volume" --n 1 --seed 1000 --overwrite
python -c "import shutil, sys; shutil.make_archive(sys.argv[1], 'zip', sys.argv[2])" \
  "$OUT/sample_volume/case_000_dicom" "$OUT/sample_volume/dicom/case_000"
medseg predict "$OUT/runs/ctv_phantom_demo" "$OUT/sample_volume/nifti/case_000_image.nii.gz" -o "$OUT/predictions_3d"

echo
echo "Done (demo models trained on synthetic data — not clinical models)."
echo "  2D report: $OUT/runs/demo_unet/evaluation/report.md        predictions: $OUT/predictions/"
echo "  3D report: $OUT/runs/ctv_phantom_demo/evaluation/report.md predictions: $OUT/predictions_3d/"
echo "  sample volume to upload: $OUT/sample_volume/case_000_dicom.zip (or nifti/, hdf5/)"
echo "  web system: MEDSEG_HOME=$MEDSEG_HOME medseg serve --model $OUT/runs/demo_unet --model $OUT/runs/ctv_phantom_demo"
