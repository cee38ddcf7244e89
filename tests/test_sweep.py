"""A 2-variant x 2-step sweep end to end through the stock CLI, killed after its
first run and resumed (slow; run in CI too)."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from synth_mtf import sweep as sweep_lib

pytestmark = pytest.mark.slow

SWEEP = """
import synth_mtf.sweep
Sweep.base_gin_files = ['experiments/demo_reverse.gin']
Sweep.variants = {'R': 'models/synthesizer/random.gin',
                  'D+V': 'models/synthesizer/dense_plus_vanilla.gin'}
Sweep.bindings = ['utils.run.train_steps = 2',
                  "utils.run.batch_size = ('sequences_per_batch', 8)"]
Sweep.eval_bindings = ["run.dataset_split = 'validation'",
                       "utils.run.batch_size = ('sequences_per_batch', 64)",
                       'Bitransformer.decode.max_decode_length = 16']
Sweep.metric = 'sequence_accuracy'
"""
CMD = [os.path.join(os.path.dirname(sys.executable), "synth-mtf"), "sweep"]


def test_sweep_runs_resumes_and_writes_tables(tmp_path):
  sweep_file = tmp_path / "two.gin"
  sweep_file.write_text(SWEEP)
  out = tmp_path / "out"
  runs = [r[0] for r in sweep_lib.load(str(sweep_file)).runs()]
  assert runs == ["R", "D+V"]
  first = out / "R" / "result.json"
  # start, and kill the whole sweep (SIGKILL) once the first run has finished
  proc = subprocess.Popen(CMD + [str(sweep_file), "--out_dir", str(out)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          start_new_session=True)
  deadline = time.time() + 600
  while not first.exists() and proc.poll() is None and time.time() < deadline:
    time.sleep(0.5)
  assert first.exists(), proc.stdout.read().decode()[-3000:]
  os.killpg(proc.pid, signal.SIGKILL)
  proc.wait()
  assert not (out / "results.csv").exists()
  first_result = first.read_text()
  # the same command again: the finished run is skipped, the other one runs
  done = subprocess.run(CMD + [str(sweep_file), "--out_dir", str(out)],
                        capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  assert "[sweep] R: done before, skipped" in done.stdout
  assert first.read_text() == first_result
  with open(out / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["variant"] for r in rows] == ["R", "D+V"]
  for r in rows:
    result = json.loads((out / r["run"] / "result.json").read_text())
    assert int(r["parameters"]) == result["parameters"] > 0
    assert r["steps"] == "2"
    assert r["metric"] == "synth_mtf_reverse/sequence_accuracy"
    assert 0.0 <= float(r["value"]) <= 100.0
  md = (out / "results.md").read_text()
  assert "| R |" in md and "| D+V |" in md
  png = (out / "results.png").read_bytes()
  assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_file_errors(tmp_path):
  bad = tmp_path / "bad.gin"
  bad.write_text("import synth_mtf.sweep\nSweep.variants = {}\n")
  with pytest.raises(ValueError, match="Sweep.variants is empty"):
    sweep_lib.load(str(bad))
  bad.write_text("import synth_mtf.sweep\nSweep.variants = {'R': 'x.gin'}\n"
                 "Sweep.grid = {'d_model': 64}\n")
  with pytest.raises(ValueError, match=r"Sweep.grid\['d_model'\] must be a "
                     "non-empty list"):
    sweep_lib.load(str(bad))
