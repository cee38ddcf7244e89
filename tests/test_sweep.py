"""A 2-variant x 2-step sweep end to end through the stock CLI, killed after its
first run and resumed (slow; run in CI too); bad configs and failed runs."""

import argparse
import csv
import json
import os
import signal
import statistics
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


def kill_sweep_then_see_its_trainer_die(proc, claim, ready):
  """Once the run's claim names a trainer and ready(), SIGKILL the sweep
  alone (not its process group): its trainer must end too."""
  deadline = time.time() + 600
  holder = {}
  while (not (holder.get("trainer_pid") and ready()) and
         proc.poll() is None and time.time() < deadline):
    time.sleep(0.2)
    try:
      holder = json.loads(claim.read_text())
    except (OSError, ValueError):
      pass
  assert holder.get("trainer_pid") and ready(), proc.stdout.read()[-3000:]
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  assert ended(holder["trainer_pid"]), "trainer outlived sweep"


def ended(pid, wait=30):
  """Whether process pid ends (or is a zombie, whoever reaps it) soon."""
  deadline = time.time() + wait
  while time.time() < deadline:
    try:
      with open("/proc/%d/stat" % pid) as f:
        if f.read().rsplit(")", 1)[1].split()[0] == "Z":
          return True
    except FileNotFoundError:
      return True
    time.sleep(0.1)
  return False


@pytest.mark.slow
def test_sweep_runs_resumes_and_writes_tables(tmp_path):
  sweep_file = tmp_path / "two.gin"
  sweep_file.write_text(SWEEP)
  out = tmp_path / "out"
  runs = [r[0] for r in sweep_lib.load(str(sweep_file)).runs()]
  assert runs == ["R", "D+V"]
  first = out / "R" / "result.json"
  claim = out / "D+V" / "claim.json"
  # start, and kill the sweep alone (SIGKILL) once the second run's trainer
  # runs: the trainer must die with it
  proc = subprocess.Popen(CMD + [str(sweep_file), "--out_dir", str(out)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
  kill_sweep_then_see_its_trainer_die(proc, claim, lambda: True)
  assert first.exists()
  assert not (out / "results.csv").exists()
  first_result = first.read_text()
  # the same command again: the finished run is skipped, the other one runs
  done = subprocess.run(CMD + [str(sweep_file), "--out_dir", str(out)],
                        capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  assert "[sweep] R: done before, skipped" in done.stdout
  assert "is gone; taking it over" in done.stdout
  assert (out / "D+V" / "train.log").read_text().count(
      "[sweep] attempt at") == 2
  assert first.read_text() == first_result
  # one job for R alone keeps D+V's row in the tables
  only = subprocess.run(CMD + [str(sweep_file), "--out_dir", str(out),
                               "--only", "R"],
                        capture_output=True, text=True, timeout=900)
  assert only.returncode == 0, only.stdout[-3000:] + only.stderr[-3000:]
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
  # more training steps: not "done before", a refusal naming the change
  more = subprocess.run(CMD + [str(sweep_file), "--out_dir", str(out),
                               "--gin_param", "Sweep.bindings = "
                               "['utils.run.train_steps = 4']"],
                        capture_output=True, text=True, timeout=900)
  assert more.returncode != 0
  assert "made under other settings" in more.stderr, more.stderr[-3000:]
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
                   **_):
    del sweep, gin_file, crossed
    run_dir = os.path.join(out_dir, run_id)
    os.makedirs(run_dir, exist_ok=True)
    if run_id == "D+V":
      with open(os.path.join(run_dir, "train.log"), "w") as f:
        f.write("out of memory\n")
      raise runner.CliError("t5_mesh_transformer failed (exit 1)")
    result = {"run": run_id, "variant": variant, "bindings": "",
              "parameters": 1000, "steps": 2, "steps_per_sec": 1.5,
              "final_loss": 0.25, "metric": "m", "value": 50.0}
    with open(os.path.join(run_dir, "result.json"), "w") as f:
      json.dump(result, f)
    return result

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


# ---- identity, claims, ownership: the stub trainer (tests/fake_trainer.py)
# in real sweep processes -----------------------------------------------------

FAKE = os.path.join(os.path.dirname(__file__), "fake_trainer.py")
FAKE_SWEEP = """
import synth_mtf.sweep
Sweep.base_gin_files = [%(base)r]
Sweep.variants = {'R': 'models/synthesizer/random.gin',
                  'D+V': 'models/synthesizer/dense_plus_vanilla.gin'}
Sweep.bindings = ['utils.run.train_steps = %(steps)d']
Sweep.metric = 'sequence_accuracy'
Sweep.trainer = [%(python)r, %(fake)r]
"""


def fake_sweep(tmp_path, steps=2, base="experiments/demo_reverse.gin"):
  path = tmp_path / "fake.gin"
  path.write_text(FAKE_SWEEP % dict(base=base, steps=steps,
                                    python=sys.executable, fake=FAKE))
  return path


def trainings(record):
  """[(run dir name, start step)] of each training the stub began."""
  if not record.exists():
    return []
  lines = [json.loads(l) for l in record.read_text().splitlines()]
  return [(os.path.basename(l["model_dir"]), l["start"]) for l in lines
          if l["event"] == "start" and l["kind"] == "train"]


def start_sweep(sweep_file, out, env, *extra):
  return subprocess.Popen(CMD + [str(sweep_file), "--out_dir", str(out)] +
                          list(extra), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=env)


def fake_env(tmp_path, sleep=0.0):
  return dict(os.environ, FAKE_TRAINER_RECORD=str(tmp_path / "record.jsonl"),
              FAKE_TRAINER_SLEEP=str(sleep))


def rows(out):
  with open(out / "results.csv") as f:
    return {r["run"]: r for r in csv.DictReader(f)}


@pytest.mark.slow
def test_two_sweeps_on_one_out_dir_train_each_run_once(tmp_path):
  """Two sweep processes side by side: every run trained once, by one of
  them; the other waits for it; both end 0 with the full table."""
  sweep_file = fake_sweep(tmp_path, steps=3)
  env = fake_env(tmp_path, sleep=1.0)
  out = tmp_path / "out"
  procs = [start_sweep(sweep_file, out, env) for _ in range(2)]
  outputs = [p.communicate(timeout=600)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outputs
  assert sorted(trainings(tmp_path / "record.jsonl")) == [("D+V", 0),
                                                         ("R", 0)]
  assert any("waiting for" in o for o in outputs), outputs
  assert sorted(rows(out)) == ["D+V", "R"]
  assert not list(out.glob("*/claim.json"))


@pytest.mark.slow
def test_only_jobs_side_by_side_end_with_the_full_table(tmp_path):
  """One job per run (--only), started together: the table each writes is
  rebuilt from every run's result.json, so the last one holds both."""
  sweep_file = fake_sweep(tmp_path)
  env = fake_env(tmp_path, sleep=0.5)
  out = tmp_path / "out"
  procs = [start_sweep(sweep_file, out, env, "--only", run)
           for run in ("D+V", "R")]
  outputs = [p.communicate(timeout=600)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outputs
  table = rows(out)
  assert sorted(table) == ["D+V", "R"]
  for run, row in table.items():
    result = json.loads((out / run / "result.json").read_text())
    assert float(row["value"]) == result["value"] == 20.0  # step 2 x 10
  # a later --only job keeps the other run's row
  again = start_sweep(sweep_file, out, env, "--only", "R")
  assert again.communicate(timeout=600)[0].count("done before, skipped") == 1
  assert sorted(rows(out)) == ["D+V", "R"]
  assert "not finished" not in (out / "results.md").read_text()


@pytest.mark.slow
def test_killed_sweep_takes_its_trainer_and_the_rerun_keeps_the_whole_run(
    tmp_path):
  """kill -9 of the sweep (its pid alone) ends its trainer; the rerun takes
  the claim over, trains on, and records steps/s and loss of both attempts."""
  sweep_file = fake_sweep(tmp_path, steps=6)
  env = fake_env(tmp_path, sleep=1.0)
  out = tmp_path / "out"
  proc = start_sweep(sweep_file, out, env, "--only", "R")
  kill_sweep_then_see_its_trainer_die(
      proc, out / "R" / "claim.json",
      (out / "R" / "model.ckpt-2.index").exists)
  killed_at = max(s for r, s in [(None, 0)] + [
      (None, int(n.split("-")[1].split(".")[0]))
      for n in os.listdir(out / "R") if n.endswith(".index")])
  assert 2 <= killed_at < 6
  again = start_sweep(sweep_file, out, env, "--only", "R")
  text = again.communicate(timeout=600)[0]
  assert again.returncode == 0, text
  assert "is gone; taking it over" in text
  assert trainings(tmp_path / "record.jsonl") == [("R", 0), ("R", killed_at)]
  log = (out / "R" / "train.log").read_text()
  assert log.count("[sweep] attempt at") == 2
  result = json.loads((out / "R" / "result.json").read_text())
  # the stub reports rate = step and loss = 1/step at each step it trains:
  # steps 1..killed_at (perhaps one more, killed before its checkpoint),
  # then killed_at+1..6; the median is over all of them
  rates = [float(r) for r in runner.RATE_RE.findall(log)]
  assert sorted(set(rates)) == list(range(1, 7)), rates
  assert result["steps_per_sec"] == statistics.median(rates)
  assert result["final_loss"] == float("%f" % (1.0 / 6))  # as printed
  assert result["steps"] == 6


def test_changed_settings_are_refused_naming_what_changed(tmp_path,
                                                         monkeypatch):
  """A run dir made under other bindings or another gin file's contents is
  refused before anything runs, naming the change and the way out."""
  gin_dir = tmp_path / "gin"
  gin_dir.mkdir()
  base = gin_dir / "base.gin"
  base.write_text("include 'experiments/demo_reverse.gin'\n")
  sweep_file = fake_sweep(tmp_path, steps=2, base=str(base))
  monkeypatch.setenv("FAKE_TRAINER_RECORD", str(tmp_path / "record.jsonl"))
  out = tmp_path / "out"
  sweep_lib.main(sweep_args(sweep_file, out, ["Sweep.eval_gin_files = []"]))
  assert len(trainings(tmp_path / "record.jsonl")) == 2
  before = (out / "R" / "result.json").read_text()
  with pytest.raises(SystemExit, match=(
      r"2 of 2 runs in .* were made under other settings(.|\n)*  R: bindings: "
      r"\['utils.run.train_steps = 2'\] -> \['utils.run.train_steps = 3'\]"
      r"(.|\n)*delete its directory")):
    sweep_lib.main(sweep_args(sweep_file, out, [
        "Sweep.eval_gin_files = []",
        "Sweep.bindings = ['utils.run.train_steps = 3']"]))
  base.write_text("include 'experiments/demo_reverse.gin'\n"
                  "utils.run.batch_size = ('sequences_per_batch', 4)\n")
  with pytest.raises(SystemExit, match=r"R: .*base.gin changed"):
    sweep_lib.main(sweep_args(sweep_file, out, ["Sweep.eval_gin_files = []"]))
  assert (out / "R" / "result.json").read_text() == before
  assert len(trainings(tmp_path / "record.jsonl")) == 2  # nothing ran


def test_a_stale_claim_is_taken_over_and_its_trainer_stopped(tmp_path):
  from synth_mtf import claims  # pylint: disable=g-import-not-at-top
  dead = subprocess.Popen(["true"])
  dead.wait()
  leftover = subprocess.Popen(["sleep", "60"], start_new_session=True)
  path = str(tmp_path / "claim.json")
  stale = dict(claims.me(), pid=dead.pid, pid_start="1",
               trainer_pid=leftover.pid,
               trainer_start=claims.process_start(leftover.pid))
  (tmp_path / "claim.json").write_text(json.dumps(stale))
  said = []
  mine = claims.take(path, said.append)
  assert mine and mine["pid"] == os.getpid()
  assert leftover.wait(timeout=10) == -signal.SIGKILL
  assert "taking it over; stopped its leftover trainer (pid %d)" % (
      leftover.pid) in said[0]
  # held by a live process (this one): another taker gets None
  assert claims.take(path, said.append) is None
  claims.release(path, mine)
  assert not os.path.exists(path)
  # an empty claim (its owner killed between creating and writing it)
  (tmp_path / "claim.json").write_text("")
  assert claims.take(path, said.append)
  assert said[-1].endswith("unreadable for 3 s; taking it over")


def test_sweep_writes_everything_through_gfile(monkeypatch, tmp_path):
  """An out_dir on another filesystem (TF's ram://, as gs:// would be):
  claims, logs, results and tables land there, nothing on the local disk."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  out = "ram://sweep_%d" % os.getpid()

  def fake_cli(cmd, log_path, append=False, **_):
    model_dir = [a for a in cmd if a.startswith("--model_dir=")][0][12:]
    assert tf.io.gfile.exists(os.path.join(model_dir, "claim.json"))
    evaluating = any("eval_checkpoint_step" in a for a in cmd)
    with tf.io.gfile.GFile(log_path, "a" if append else "w") as f:
      f.write("INFO:tensorflow:eval/x/sequence_accuracy at step 2: 50.0\n"
              if evaluating else "INFO:tensorflow:global_step/sec: 3.0\n"
              "tf_loss[0.5][2]\n")
    with tf.io.gfile.GFile(os.path.join(model_dir, "model.ckpt-2.index"),
                           "w") as f:
      f.write("")

  monkeypatch.setattr(runner, "run_cli", fake_cli)
  monkeypatch.setattr(runner, "checkpoint_parameters", lambda d: 7)
  sweep = sweep_lib.Sweep(variants={"R": "models/synthesizer/random.gin"},
                          base_gin_files=["experiments/demo_reverse.gin"],
                          metric="sequence_accuracy")
  monkeypatch.setattr(sweep_lib, "load", lambda *a: sweep)
  monkeypatch.chdir(tmp_path)  # where a local path "ram:/..." would land
  sweep_lib.main(sweep_args("s.gin", out))
  assert not os.listdir(tmp_path)
  assert not tf.io.gfile.exists(out + "/R/claim.json")
  with tf.io.gfile.GFile(out + "/results.csv") as f:
    (row,) = csv.DictReader(f)
  assert (row["run"], row["parameters"], row["value"]) == ("R", "7", "50.0")
  assert tf.io.gfile.GFile(out + "/results.png", "rb").read(4) == b"\x89PNG"
  assert "| R | - | 7 | 2 | 3.00 | 0.5000 |" in tf.io.gfile.GFile(
      out + "/results.md").read()


def test_sweep_table_format():
  """The results.md layout (one writer, synth_mtf/tables.py)."""
  from synth_mtf import tables  # pylint: disable=g-import-not-at-top
  assert tables.markdown(["a", "b"], [[1, None], ["x", 2.5]], align="lr") == (
      "| a | b |\n|---|---:|\n| 1 |  |\n| x | 2.5 |")


def test_the_trainer_dies_with_its_parent_whatever_kills_it(tmp_path):
  """runner.run_cli's child ends when its parent is SIGKILLed (nothing
  to clean up after it), and leads its own process group."""
  parent = subprocess.Popen(
      [sys.executable, "-c", "import sys\nfrom synth_mtf import runner\n"
       "runner.run_cli(['sleep', '120'], sys.argv[1], on_start=lambda pid: "
       "print(pid, flush=True))", str(tmp_path / "log")],
      stdout=subprocess.PIPE, text=True)
  child = int(parent.stdout.readline())
  assert os.getpgid(child) == child != os.getpgid(parent.pid)
  os.kill(parent.pid, signal.SIGKILL)
  parent.wait()
  assert ended(child)
