#!/usr/bin/env bash
# Create .venv (if missing) and install the project with its pinned torch into it.
# Sourced by scripts/test.sh and scripts/run_pipeline.sh; safe to run again (pip skips
# what is already there). Override the interpreter with PYTHON=python3.11.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "[install] creating $VENV with $($PYTHON --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off -q)
stamp="$VENV/.lighttrack-installed"
# Reinstall only when pyproject.toml changed since the last successful install.
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] \
        && "$VENV/bin/python" -c "import torch, torchvision, ray, mlflow, lighttrack" 2>/dev/null; then
    echo "[install] $VENV is up to date"
    exit 0
fi
start=$(date +%s)
echo "[install] torch==2.14.1 torchvision==0.29.1"
"${PIP[@]}" torch==2.14.1 torchvision==0.29.1
echo "[install] lighttrack[test,deploy,runtimes] (editable)"
"${PIP[@]}" -e '.[test,deploy,runtimes]'
touch "$stamp"
echo "[install] done in $(( $(date +%s) - start )) s"
