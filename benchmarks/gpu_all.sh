#!/usr/bin/env bash
# Everything medseg measures on a GPU machine, in one command, at full settings:
#   bash benchmarks/gpu_all.sh [extra options for bench_unet.py]
# Uses the python that holds a CUDA build of torch ($PYTHON, default python3) and the checkout's src/
# (medseg need not be installed). Do NOT source scripts/setup_env.sh here: it pins the CPU build of torch.
# MONAI must be importable; if it is not, a wheel in $MEDSEG_WHEELS (default <repo>/.whl, git-ignored)
# is installed to /tmp/medseg-site, e.g. one fetched beforehand with
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl monai==1.6.1 pydicom nibabel
# Results: benchmarks/results/bench_unet_cuda.json. If $OUT is set (a remote runner that collects a
# folder), the log and the result files are copied there too.
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
"$PY" - <<'EOF'
import sys, torch
if not torch.cuda.is_available():
    sys.exit(f"gpu_all.sh: torch {torch.__version__} sees no CUDA device; this script is for a GPU machine")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}")
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true

RESULTS=benchmarks/results
LOG="${OUT:+$OUT/gpu_all.log}"
LOG="${LOG:-/dev/null}"
status=0
STAMP="$(mktemp)"  # result files newer than this are this run's

# 1. U-Net vs MONAI UNet on the GPU: bf16 autocast + channels-last (as medseg trains) and fp32, batch 32.
#    The CPU numbers come from a CPU run (benchmarks/results/bench_unet_cpu.json); add cpu to --device to
#    time this machine's CPU as well (a minute or two on 16 cores).
#    Writes $RESULTS/bench_unet_cuda.json (bench_unet_cuda_quick.json with --quick, bench_unet_cpu_cuda.json
#    with --device cpu,cuda).
"$PY" benchmarks/bench_unet.py --device cuda "$@" 2>&1 | tee -a "$LOG" || status=$?

# 2. Full-scale training of the standard 4-pooling U-Net (64…1024, batch 8, Adam 1e-3, plateau ×0.5/3,
#    early stopping 9) on the full-size synthesized Pommier-procedure set (13,434 pairs, made on the fly),
#    fold 0 of the papers' split, scored on the held-out 20 % test set; recorded with an overlap_iou field.
#    FOLDS=0,1,2,3,4 for the whole cross-validation. Add --data LowRes_13434_overlapping_pairs.h5 for the real set.
export MEDSEG_HOME="${MEDSEG_HOME:-$ROOT/.medseg-home}"
"$PY" -m medseg cv configs/chromosomes/unet.yaml --folds "${FOLDS:-0}" --name unet_pommier_fullscale \
  --set output.root=runs --device cuda 2>&1 | tee -a "$LOG" || status=$?
"$PY" benchmarks/record_run.py runs/unet_pommier_fullscale --out "$RESULTS/unet_pommier_fullscale_gpu.json" \
  --command "bash benchmarks/gpu_all.sh (medseg cv configs/chromosomes/unet.yaml --folds ${FOLDS:-0} --device cuda)" \
  2>&1 | tee -a "$LOG" || status=$?

# 3. The CTV thesis on the GPU (issue 4): the phantom demo model at full width (16…128 channels, thesis-size
#    72×256×256 volumes, 3-fold CV by patient) and Table 3.1's 21 rows on the chromosome data, fold 0;
#    reports under runs/tables/, table.json with a dice field per row.
if [ "${CTV:-1}" = "1" ]; then
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

# 4. The chromosome papers' tables (long: each row is a full training). One table at a time, fold 0, e.g.:
#    "$PY" -m medseg reproduce configs/tables/arms_net_table5.yaml --folds 0 --device cuda --out runs/tables

if [ -n "${OUT:-}" ]; then
  find "$RESULTS" -maxdepth 1 -name '*.json' -newer "$STAMP" -exec cp {} "$OUT"/ \;
fi
rm -f "$STAMP"
exit "$status"
