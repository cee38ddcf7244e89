#!/usr/bin/env bash
# The test command (README, and .ci/run): set up .venv, then run every test,
# the slow end-to-end runs of the stock t5_mesh_transformer CLI included, two
# test files at a time (pytest-xdist).
#   bash scripts/test.sh            the full suite, what CI runs
#   bash scripts/test.sh --quick    the inner loop: -m "not slow" (no stock-CLI training)
#   bash scripts/test.sh [--quick] tests/test_layer.py -k dense   (pytest arguments pass through)
# Without arguments, tests/test_xla.py runs afterwards in a process of its own:
# its TF-vs-XLA comparisons are exact to float32 rounding, and in a worker that
# ran other test files first two float32 cases differed by a few percent in an
# optimizer slot (not understood yet; alone they pass).
set -euo pipefail
cd "$(dirname "$0")/.."
tier=()
if [ "${1:-}" = "--quick" ]; then
  shift
  tier=(-m "not slow")
fi
bash scripts/setup.sh
pytest=(.venv/bin/python -m pytest -q -p no:cacheprovider "${tier[@]}")
if [ $# -gt 0 ]; then
  exec "${pytest[@]}" -n 2 --dist loadfile "$@"
fi
rc=0
"${pytest[@]}" -n 2 --dist loadfile --ignore=tests/test_xla.py || rc=$?
"${pytest[@]}" tests/test_xla.py || rc=$?
exit $rc
