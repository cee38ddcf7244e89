#!/usr/bin/env bash
# The test command (README, and .ci/run): set up .venv, then run every test,
# the slow end-to-end runs of the stock t5_mesh_transformer CLI included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
