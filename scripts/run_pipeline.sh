#!/usr/bin/env bash
# The whole LightTrack pipeline on this machine (README quick start, first command):
# install into .venv, generate the embedded data, start a local Ray head and MLflow server
# (127.0.0.1), run phases 1-4 with `ray job submit` on the tiny configs, print the found
# architecture. Services stop on exit or Ctrl-C. Extra arguments go to `python -m devcluster.pipeline`
# (e.g. --size micro, --phases pretrain,supernet).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

start=$(date +%s)
bash scripts/install.sh
echo "[run_pipeline] install took $(( $(date +%s) - start )) s"
# exec: the pipeline driver gets Ctrl-C/SIGTERM itself and stops the services it started.
exec .venv/bin/python -m devcluster.pipeline "$@"
