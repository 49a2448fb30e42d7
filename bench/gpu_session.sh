#!/usr/bin/env bash
# One command for a lent GPU: environment, data from the carried data/raw, `pytest -m gpu`, step
# times, the `gpu` profile's main runs and studies within a wall-clock budget, and one archive
# (repro/gpu_session.py says what and why). Needs only torch, torchdiffeq, numpy, scipy, pandas,
# seaborn, jinja2, pyyaml, tqdm and pytest: no mlflow, no dvc, no network, no install.
#
#   bash bench/gpu_session.sh                      # archive to $OUT (else ./gpu-session)
#   bash bench/gpu_session.sh --budget-s 300       # a shorter session
#   bash bench/gpu_session.sh --dry-run            # the same code path on a CPU, in seconds
#
# Then, on the machine with the repository: repro gpu-import <out>/gpu_session.tar.gz
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python="${PYTHON:-$(command -v python3 || command -v python)}"
exec "$python" -m repro.gpu_session "$@"
