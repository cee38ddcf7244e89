#!/usr/bin/env bash
# Create .venv with the verified stack (requirements/lock.txt) and synth-mtf.
# Idempotent: re-installs only when the lock files or setup.cfg change.
# The lock is a complete `pip freeze`, installed with --no-deps: TF 2.12 caps
# typing-extensions below what torch (imported by t5) needs, so a resolver run
# would refuse; the pinned set is the one verified to run the stock CLI on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), "synth-mtf needs Python 3.11 (TF 2.12.1), got %s" % sys.version' 
stamp=$(cat requirements/lock.txt requirements/test.txt requirements/extras.txt setup.cfg pyproject.toml | sha256sum | cut -c1-16)
if [ -f .venv/.synth_mtf_stamp ] && [ "$(cat .venv/.synth_mtf_stamp)" = "$stamp" ]; then
  exit 0
fi
quiet() {  # pip's own exit status survives (pipefail); its index warnings do not
  "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }
}
echo "[setup] creating .venv with the pinned stack (a few minutes the first time)"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
quiet .venv/bin/python -m pip install -q --no-deps -r requirements/lock.txt \
  -r requirements/test.txt -r requirements/extras.txt setuptools==80.9.0
quiet .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
.venv/bin/python -c "import synth_mtf, t5.models, pytest" 2>/dev/null || {
  echo "[setup] the environment does not import; see the pip output above" >&2; exit 1; }
echo "$stamp" > .venv/.synth_mtf_stamp
echo "[setup] ready: .venv"
