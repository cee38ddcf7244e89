"""A 2-variant x 2-step sweep end to end through the stock CLI, killed after its
first run and resumed (slow; run in CI too); bad configs and failed runs."""

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import synth_mtf
from synth_mtf import runner
from synth_mtf import sweep as sweep_lib

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


@pytest.mark.slow
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


def sweep_args(sweep_file, out_dir, gin_param=None):
  return argparse.Namespace(sweep_file=str(sweep_file), out_dir=str(out_dir),
                            gin_param=gin_param, only=None, max_runs=None)


def test_sweep_checks_every_run_before_the_first(tmp_path, monkeypatch):
  """A missing variant file and a misspelled binding stop the sweep before any
  run starts, each named with its run."""
  typo = "models/synthesizer/dense_plus_vanila.gin"
  assert not os.path.exists(os.path.join(synth_mtf.GIN_DIR, typo))
  sweep_file = tmp_path / "bad.gin"
  sweep_file.write_text(SWEEP.replace(
      "models/synthesizer/dense_plus_vanilla.gin", typo))
  started = []
  monkeypatch.setattr(runner, "run_cli", lambda *a, **k: started.append(a))
  with pytest.raises(SystemExit, match=r"1 of 2 runs have a bad config; "
                     r"nothing was run(.|\n)*  D\+V: OSError: Unable to open "
                     r"file: %s" % typo):
    sweep_lib.main(sweep_args(sweep_file, tmp_path / "out"))
  sweep_file.write_text(SWEEP)
  with pytest.raises(SystemExit, match=r"2 of 2 runs have a bad config(.|\n)*"
                     r"  R: ValueError: .*'train_stepz'(.|\n)*  D\+V: "):
    sweep_lib.main(sweep_args(sweep_file, tmp_path / "out", [
        "Sweep.bindings = ['utils.run.train_stepz = 2']"]))
  assert not started


def test_a_failed_run_keeps_the_others_and_their_table(tmp_path, monkeypatch):
  sweep_file = tmp_path / "three.gin"
  sweep_file.write_text(SWEEP.replace(
      "'D+V': 'models/synthesizer/dense_plus_vanilla.gin'",
      "'D+V': 'models/synthesizer/dense_plus_vanilla.gin', "
      "'FR': 'models/synthesizer/factorized_random.gin'"))
  out = tmp_path / "out"

  def fake_run_one(sweep, run_id, variant, gin_file, crossed, out_dir,
                   log=print):
    del sweep, gin_file, crossed, log
    run_dir = os.path.join(out_dir, run_id)
    os.makedirs(run_dir, exist_ok=True)
    if run_id == "D+V":
      with open(os.path.join(run_dir, "train.log"), "w") as f:
        f.write("out of memory\n")
      raise runner.CliError("t5_mesh_transformer failed (exit 1)")
    return {"run": run_id, "variant": variant, "bindings": "",
            "parameters": 1000, "steps": 2, "steps_per_sec": 1.5,
            "final_loss": 0.25, "metric": "m", "value": 50.0}

  monkeypatch.setattr(sweep_lib, "run_one", fake_run_one)
  with pytest.raises(SystemExit) as e:
    sweep_lib.main(sweep_args(sweep_file, out))
  assert "1 runs failed" in str(e.value)
  assert "D+V: see %s" % (out / "D+V" / "train.log") in str(e.value)
  with open(out / "results.csv") as f:
    assert [r["variant"] for r in csv.DictReader(f)] == ["R", "FR"]
  md = (out / "results.md").read_text()
  assert "| R |" in md and "| FR |" in md and "| D+V |" not in md


def test_a_run_trained_on_evaluates_only_its_new_steps(tmp_path, monkeypatch):
  """Asked for later eval_steps, a run trains on and evaluates only the steps
  after the checkpoint it resumes from; the earlier ones come from its
  result.json. Another metric than before stops it with the fix."""
  sweep = sweep_lib.Sweep(variants={"R": "models/synthesizer/random.gin"},
                          eval_gin_files=["eval.gin"], metric="accuracy",
                          eval_steps=[2, 4, 6])
  run_dir = tmp_path / "R"
  run_dir.mkdir()
  (run_dir / "result.json").write_text(json.dumps(
      {"metric": "d/accuracy", "curve": [[2, 10.0], [4, 20.0]],
       "seconds": 1000.0}))
  asked = []

  def fake_cli(cmd, log_path, **_):
    step = [a.split(" = ")[1] for a in cmd
            if a.startswith("--gin_param=eval_checkpoint_step")]
    asked.extend(step)
    with open(log_path, "w") as f:
      if step:  # what the CLI reports at every step asked: here 99.0
        f.write("".join("INFO:tensorflow:eval/%s at step %d: 99.0\n"
                        % (metric[0], s) for s in json.loads(step[0])))

  monkeypatch.setattr(runner, "run_cli", fake_cli)
  monkeypatch.setattr(runner, "checkpoint_parameters", lambda d: 1)
  monkeypatch.setattr(sweep_lib, "_latest_step", lambda d: 4)
  monkeypatch.setattr(sweep_lib, "_checkpoint_steps", lambda d: [2, 4, 6])
  metric = ["d/accuracy"]
  result = sweep_lib.run_one(sweep, "R", "R", "random.gin", [], str(tmp_path),
                             log=lambda m: None)
  assert asked == ["[6]"]
  assert result["curve"] == [[2, 10.0], [4, 20.0], [6, 99.0]]
  assert 1000.0 <= result["seconds"] < 1100.0  # earlier time kept, this added
  # the earlier curve measured another metric: not merged, a clear error
  (run_dir / "result.json").write_text(json.dumps(
      {"metric": "d/accuracy", "curve": [[2, 10.0], [4, 20.0]]}))
  metric[0] = "d/other_accuracy"
  with pytest.raises(runner.CliError, match=r"evaluated d/accuracy before "
                     r"(.|\n)* and d/other_accuracy now; delete .*result\.json"
                     r" to evaluate every step again"):
    sweep_lib.run_one(sweep, "R", "R", "random.gin", [], str(tmp_path),
                      log=lambda m: None)
