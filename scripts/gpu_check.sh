#!/usr/bin/env bash
# The library's own code on a GPU machine without Ray or MLflow (the device tool's machine:
# whatever recent PyTorch it has): training steps of phases 1, 2 and 4 with bf16, BN
# recalibration + one candidate evaluation, the tracker, and an ONNX export of the
# GPU-trained weights, each on CUDA and on the CPU side by side (scripts/gpu_check.py).
# Figures go to ${OUT:-runs/gpu_check}/gpu_check.json; put them in docs/results.md.
# Budget: at most 8 minutes (--steps 20 takes about a minute per device on the CPU here).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] && PY=.venv/bin/python
OUT="${OUT:-runs/gpu_check}"
"$PY" - <<'PY'
import importlib.util, sys
missing = [m for m in ("torch", "torchvision", "cv2", "pyarrow", "yaml", "onnxruntime", "onnx", "skimage")
           if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu_check: missing Python packages {missing}; pip install them first")
PY
timeout 480 "$PY" scripts/gpu_check.py --out "$OUT" "$@"
