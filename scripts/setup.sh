#!/usr/bin/env bash
# Idempotent setup on a fresh machine: a virtual environment in .venv with bench and its dependencies.
# torch is pinned to 2.13.0 (a CPU build available offline); an unpinned torch would pull CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev,text]"
# a tiny third-party encoder plugin (entry point only) that the tests use to check plugin discovery
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e tests/plugins/bench_toy_encoder
