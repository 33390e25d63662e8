#!/usr/bin/env bash
# Install (scripts/install.sh) and run the whole test suite, end-to-end smoke included.
# Extra arguments go to pytest: bash scripts/test.sh -k cluster
# --all also runs the cases marked long, which CI leaves out (bash scripts/test.sh --all)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install.sh
bash scripts/install_vot.sh || echo "[test] the VOT toolkit did not install: tests/test_vot.py skips its comparison with it" >&2
echo "[test] $(date +%T) pytest $*"
start=$(date +%s)
set +e
.venv/bin/python -m pytest -q --durations=15 "$@"
rc=$?
set -e
echo "[test] pytest exit code $rc after $(( $(date +%s) - start )) s"
if [ "$rc" -eq 5 ]; then
    echo "[test] FAIL: pytest collected no tests; nothing was checked" >&2
    exit 1
fi
exit "$rc"
