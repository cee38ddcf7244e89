#!/usr/bin/env bash
# The test command (README, and .ci/run): set up .venv, then run every test,
# the slow end-to-end runs of the stock t5_mesh_transformer CLI included, two
# test files at a time (pytest-xdist).
#   bash scripts/test.sh            the full suite, what CI runs
#   bash scripts/test.sh --quick    the inner loop: -m "not slow" (no stock-CLI training)
#   bash scripts/test.sh [--quick] tests/test_layer.py -k dense   (pytest arguments pass through)
set -euo pipefail
cd "$(dirname "$0")/.."
tier=()
if [ "${1:-}" = "--quick" ]; then
  shift
  tier=(-m "not slow")
fi
bash scripts/setup.sh
pytest=(.venv/bin/python -m pytest -q -p no:cacheprovider "${tier[@]}")
exec "${pytest[@]}" -n 2 --dist loadfile "$@"
