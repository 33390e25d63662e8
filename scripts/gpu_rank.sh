#!/usr/bin/env bash
# Issue 32 on a bare GPU machine (bench/bench_search_proof.py): training speed before and
# after, a supernet trained at 10x the small phase 2, whether its paths track, the ranking
# against a ground truth trained twice, evolution against random, and the found tracker
# against random ones after phase 4. Figures go to ${OUT:-runs/gpu_rank}/proof.json as they
# are measured. Budget: --budget-s 420 plus the data; the timeout leaves room for a rerun.
#
# That machine has no network and no nevergrad (the race needs it): first, here,
#   bash scripts/gpu_rank.sh --prepare      # wheels for Python 3.12 into .whl/ (about 24 MB)
# then run it there with .whl carried (the device tool's carry: [".whl"]). One lease, two calls:
#   D=$OUT; OUT=runs/gpu_rank bash scripts/gpu_rank.sh --parts speed,paths,race,final; cp runs/gpu_rank/*.json runs/gpu_rank/*.txt $D/
#   D=$OUT; OUT=runs/gpu_rank2 bash scripts/gpu_rank.sh --parts rank --reuse runs/gpu_rank; cp runs/gpu_rank2/*.json $D/
# (runs/ is kept on a warm machine between calls; the device tool's $OUT is new each call).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] && PY=.venv/bin/python
if [ "${1:-}" = "--prepare" ]; then
    "$PY" -m pip download -q --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_17_x86_64 nevergrad -d .whl
    rm -f .whl/numpy-* .whl/scipy-*  # that machine has both (torch, scikit-image)
    du -sh .whl
    exit 0
fi
OUT="${OUT:-runs/gpu_rank}"
"$PY" -c "import nevergrad" 2>/dev/null || "$PY" -m pip install -q --no-index --find-links .whl nevergrad \
    || echo "[gpu_rank] no nevergrad: the race and final parts will record an error" >&2
timeout 540 "$PY" bench/bench_search_proof.py --out "$OUT" --budget-s 420 "$@"
