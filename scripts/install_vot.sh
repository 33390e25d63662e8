#!/usr/bin/env bash
# The VOT toolkit (vot-toolkit 0.9.0) in its own virtual environment, .venv-vot: it pins
# opencv-python (ours is opencv-python-headless) and needs attributee 0.1.9 on Python 3.11
# (0.1.10 fails to import). Only tests/test_vot.py uses it, through
# scripts/vot_toolkit_scores.py; without it that test skips its comparison with the toolkit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
VENV=.venv-vot
stamp="$VENV/.vot-installed"
if [ -f "$stamp" ] && "$VENV/bin/python" -c "import vot" 2>/dev/null; then
    echo "[install-vot] $VENV is up to date"
    exit 0
fi
start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off -q \
    vot-toolkit==0.9.0 attributee==0.1.9
"$VENV/bin/python" -c "import vot.analysis.supervised"
touch "$stamp"
echo "[install-vot] done in $(( $(date +%s) - start )) s"
