#!/usr/bin/env bash
# The test command (README, and .ci/run): set up .venv, then run every test,
# the slow end-to-end runs of the stock t5_mesh_transformer CLI included, two
# test files at a time (pytest-xdist): 73 min in one process on a slow CI machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile "$@"
