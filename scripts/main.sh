#!/usr/bin/env bash
# The main job (README): set up .venv, then train a small T5 whose self-attention
# is a Synthesizer (default: Random) with the stock t5_mesh_transformer CLI on CPU,
# on a task generated offline, decode the validation split and print the metric.
#   bash scripts/main.sh [variant] [model_dir]   e.g. bash scripts/main.sh dense
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m synth_mtf.demo "$@"
