"""Reliability through the stock CLI: crash and resume, reproducibility, loud
failures on a checkpoint of another variant (slow; run in CI too)."""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

pytestmark = pytest.mark.slow

CLI = os.path.join(os.path.dirname(sys.executable), "t5_mesh_transformer")
MIXTURE = ["SynthesizerAttention.synthesizers = "
           "['fixed_random', 'dense', 'dot_product']"]


def command(model_dir, steps, extra=(), gin_files=()):
  cmd = [CLI, "--model_dir=%s" % model_dir, "--module_import=synth_mtf",
         "--gin_file=experiments/demo_reverse.gin",
         "--gin_file=models/synthesizer/random.gin"]
  cmd += ["--gin_file=%s" % f for f in gin_files]
  params = ["utils.run.train_steps = %d" % steps,
            "utils.run.batch_size = ('sequences_per_batch', 8)"] + list(extra)
  return cmd + ["--gin_param=%s" % p for p in params]


def run(cmd):
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
  return proc.returncode, proc.stdout + proc.stderr


def variables(model_dir, step=None):
  path = (os.path.join(model_dir, "model.ckpt-%d" % step) if step
          else tf.train.latest_checkpoint(model_dir))
  reader = tf.train.load_checkpoint(path)
  return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()}


def losses(log):
  return [float(x) for x in re.findall(r"tf_loss\[([0-9.eE+-]+)\]", log)]


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path):
  """SIGKILL mid-run, then the same command again: it restores its last
  checkpoint exactly (every variable, Fixed Random R and alpha included: the
  restarted run re-saves the restored state, which must equal the file it
  read) and ends at the requested step."""
  steps, every = 40, 10
  extra = MIXTURE + ["utils.run.save_checkpoints_steps = %d" % every,
                     "utils.run.keep_checkpoint_max = 100"]
  d = str(tmp_path / "run")
  proc = subprocess.Popen(command(d, steps, extra), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True,
                          start_new_session=True)
  first_ckpt = os.path.join(d, "model.ckpt-%d.index" % every)
  deadline = time.time() + 600
  while not os.path.exists(first_ckpt) and time.time() < deadline:
    assert proc.poll() is None, proc.stdout.read()[-3000:]
    time.sleep(0.05)
  time.sleep(0.5)
  os.killpg(proc.pid, signal.SIGKILL)
  proc.wait()
  before_kill = proc.stdout.read()
  killed_at = max(int(s) for s in re.findall(r"tf_loss\[[^\]]*\]\[(\d+)\]",
                                             before_kill))
  last = tf.train.latest_checkpoint(d)
  resumed_from = int(last.rsplit("-", 1)[1])
  assert resumed_from < steps, "the run finished before it could be killed"
  saved = variables(d, resumed_from)
  written = os.path.getmtime(last + ".index")

  rc, log = run(command(d, steps, extra))
  assert rc == 0, log[-3000:]
  assert "Restoring parameters from %s" % last in log  # not from scratch
  assert tf.train.latest_checkpoint(d).endswith("-%d" % steps)
  # the restarted run saved what it restored as model.ckpt-<resumed_from>
  assert os.path.getmtime(last + ".index") > written
  restored = variables(d, resumed_from)
  assert sorted(restored) == sorted(saved)
  for name in saved:
    np.testing.assert_array_equal(restored[name], saved[name], err_msg=name)
  assert [n for n in saved if n.endswith("fixed_random/R")]
  assert [n for n in saved if n.endswith("SynthesizerAttention/alpha")]
  final = variables(d)
  for n in [n for n in final if n.endswith("fixed_random/R")]:
    np.testing.assert_array_equal(final[n], saved[n])  # Fixed: never trained
  print("\nRESUME last logged step %d, resumed from checkpoint %d, final step %d"
        % (killed_at, resumed_from, steps))


def test_same_seed_same_losses_and_fixed_matrix_across_layouts(tmp_path):
  extra = MIXTURE
  a, b, mesh = (str(tmp_path / n) for n in ("a", "b", "mesh"))
  logs = []
  for d in (a, b):
    rc, log = run(command(d, 6, extra, ["reproducible.gin"]))
    assert rc == 0, log[-3000:]
    logs.append(losses(log))
  assert len(logs[0]) >= 5 and logs[0] == logs[1]  # bit for bit
  rc, log = run(command(mesh, 1, extra + [
      "utils.run.mesh_shape = 'model:2,batch:2'",
      "utils.run.mesh_devices = ['cpu:0', 'cpu:0', 'cpu:0', 'cpu:0']",
      "utils.run.layout_rules = 'batch:batch,heads:model,d_ff:model'"],
                             ["reproducible.gin"]))
  assert rc == 0, log[-3000:]
  va, vb, vm = variables(a), variables(b), variables(mesh)
  fixed = [n for n in va if n.endswith("fixed_random/R")]
  assert len(fixed) == 4  # 2 encoder + 2 decoder layers
  for n in fixed:
    np.testing.assert_array_equal(va[n], vb[n])
    np.testing.assert_array_equal(va[n], vm[n])  # heads split over 'model'


def test_checkpoint_of_another_variant_fails_loudly(tmp_path):
  d = str(tmp_path / "m")
  rc, log = run(command(d, 2))
  assert rc == 0, log[-3000:]
  cmd = command(d, 4)
  cmd[cmd.index("--gin_file=models/synthesizer/random.gin")] = (
      "--gin_file=models/synthesizer/dense.gin")
  rc, log = run(cmd)
  assert rc != 0
  assert re.search(r"--model_dir \S+ holds a checkpoint \(model.ckpt-2\) written "
                   r"by a different model.*random/R.*dense/W1.*Use a new "
                   r"--model_dir", log)
  assert tf.train.latest_checkpoint(d).endswith("-2")  # nothing was trained
