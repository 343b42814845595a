#!/usr/bin/env bash
# Everything medseg measures on a GPU machine, in one command that fits 9 minutes on one H100:
#   bash benchmarks/gpu_all.sh [gpu_suite.py options]      e.g. --only bench_unet,ctv_unet3d_96
#   bash benchmarks/gpu_all.sh --tiny                        the same steps on the CPU at tiny sizes (minutes)
# The steps (benchmarks/gpu_suite.py: U-Net throughput at 128², a papers' table at full width on synth:pommier, the
# M-FISH transfer at the papers' widths, the karyotype classifier, whole metaphases, the 3D model at 96³) each write
# benchmarks/results/<step>_gpu.json (--tiny: a temporary folder, never benchmarks/results) and print their wall time.
# The M-FISH steps need ../shared/data beside the checkout.
# Uses the python that holds a CUDA build of torch ($PYTHON, default python3) and the checkout's src/
# (medseg need not be installed). Do NOT source scripts/setup_env.sh here: it pins the CPU build of torch.
# MONAI must be importable; if it is not, a wheel in $MEDSEG_WHEELS (default <repo>/.whl, git-ignored)
# is installed to /tmp/medseg-site, e.g. one fetched beforehand with
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl monai==1.6.1 pydicom nibabel
# LONG=1 adds the long trainings after the suite (hours: the full-scale U-Net and the CTV thesis' tables).
# If $OUT is set (a remote runner that collects a folder), the log, the suite's step logs and the result files
# are copied there too.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

if ! "$PY" -c "import monai" 2>/dev/null; then
  WHEELS="${MEDSEG_WHEELS:-$ROOT/.whl}"
  if compgen -G "$WHEELS/monai-*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/medseg-site \
      "$WHEELS"/*.whl
    export PYTHONPATH="$PYTHONPATH:/tmp/medseg-site"
  else
    echo "gpu_all.sh: monai is not importable and there is no $WHEELS/monai-*.whl to install" >&2
    exit 1
  fi
fi
"$PY" -c "import torch; print(f'torch {torch.__version__}, CUDA {torch.version.cuda}', \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '(no CUDA device)')"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true

RESULTS=benchmarks/results
LOG="${OUT:+$OUT/gpu_all.log}"
LOG="${LOG:-/dev/null}"
status=0
STAMP="$(mktemp)"  # result files newer than this are this run's

# The suite (its steps, budgets and --tiny mode: benchmarks/gpu_suite.py; it refuses to run without CUDA unless --tiny).
"$PY" benchmarks/gpu_suite.py "$@" 2>&1 | tee -a "$LOG" || status=$?

# The long trainings (LONG=1), hours each:
# - the standard 4-pooling U-Net (64…1024, batch 8, Adam 1e-3, plateau ×0.5/3, early stopping 9) on the
#   full-size synthesized Pommier-procedure set, fold 0 (FOLDS=0,1,2,3,4 for the whole cross-validation; add
#   --data LowRes_13434_overlapping_pairs.h5 for the real set), recorded with an overlap_iou field;
# - the CTV thesis: the phantom demo model at full width (72×256×256 volumes, 3-fold CV by patient) and
#   Table 3.1's 21 rows on the chromosome data, fold 0 (table.json with a dice field per row).
if [ "${LONG:-0}" = "1" ]; then
  export MEDSEG_HOME="${MEDSEG_HOME:-$ROOT/.medseg-home}"
  "$PY" -m medseg cv configs/chromosomes/unet.yaml --folds "${FOLDS:-0}" --name unet_pommier_fullscale \
    --set output.root=runs --device cuda 2>&1 | tee -a "$LOG" || status=$?
  "$PY" benchmarks/record_run.py runs/unet_pommier_fullscale --out "$RESULTS/unet_pommier_fullscale_gpu.json" \
    --command "LONG=1 bash benchmarks/gpu_all.sh (medseg cv configs/chromosomes/unet.yaml --folds ${FOLDS:-0} --device cuda)" \
    2>&1 | tee -a "$LOG" || status=$?
  "$PY" -m medseg reproduce configs/tables/ctv_table2_1_thesis.yaml --data synth:phantom --device cuda --out runs/tables \
    --set data.phantom.n=60 --set "data.phantom.shape=[72,256,256]" --set preprocess.clip_min=-1024 \
    --set preprocess.clip_max=576 --set train.epochs=150 \
    2>&1 | tee -a "$LOG" || status=$?
  "$PY" -m medseg reproduce configs/tables/ctv_table3_1.yaml --folds 0 --device cuda --out runs/tables \
    2>&1 | tee -a "$LOG" || status=$?
  for t in runs/tables/ctv_table2_1_thesis runs/tables/ctv_table3_1; do
    [ -f "$t/table.json" ] && cp "$t/table.json" "$RESULTS/$(basename "$t")_gpu.json"
  done
fi

if [ -n "${OUT:-}" ]; then
  find "$RESULTS" -maxdepth 1 -name '*.json' -newer "$STAMP" -exec cp {} "$OUT"/ \;
  [ -d runs/gpu_suite/logs ] && cp -r runs/gpu_suite/logs "$OUT/gpu_suite_logs"
fi
rm -f "$STAMP"
exit "$status"
