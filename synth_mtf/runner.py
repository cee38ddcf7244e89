"""Run the stock t5_mesh_transformer CLI as a subprocess and read its logs.

Shared by the main job (demo.py), the sweeps (sweep.py) and the benchmarks.
"""

import os
import re
import statistics
import subprocess
import sys

import numpy as np

STEP_RE = re.compile(r"tf_loss\[([0-9.eE+-]+)\]\[(\d+)\]")
RATE_RE = re.compile(r"global_step/sec: ([0-9.]+)")
METRIC_RE = re.compile(r"INFO:tensorflow:eval/(\S+) at step (\d+): ([0-9.eE+-]+)")
# perplexity_eval.gin reports through the estimator instead
SAVED_DICT_RE = re.compile(r"INFO:tensorflow:Saving dict for global step (\d+): "
                           r"(.*)")


class CliError(RuntimeError):
  pass


def cli_command(model_dir, gin_files, bindings=()):
  exe = os.path.join(os.path.dirname(sys.executable), "t5_mesh_transformer")
  cmd = [exe, "--model_dir=" + model_dir, "--module_import=synth_mtf"]
  cmd += ["--gin_file=" + f for f in gin_files]
  cmd += ["--gin_param=" + b for b in bindings]
  return cmd


def run_cli(cmd, log_path, on_line=None, timeout=None):
  """Run the CLI, write its whole output to log_path, feed lines to on_line."""
  with open(log_path, "w") as log:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
      for line in proc.stdout:
        log.write(line)
        if on_line:
          on_line(line)
      rc = proc.wait(timeout=timeout)
    except BaseException:
      proc.kill()
      raise
  if rc:
    with open(log_path) as f:
      tail = f.read()[-3000:]
    raise CliError("t5_mesh_transformer failed (exit %d); full log: %s\n%s"
                   % (rc, log_path, tail))


def read_log(path):
  with open(path) as f:
    return f.read()


def steps_per_second(log_text):
  """Median of the estimator's global_step/sec reports (None if none)."""
  rates = [float(r) for r in RATE_RE.findall(log_text)]
  return statistics.median(rates) if rates else None


def final_loss(log_text):
  losses = STEP_RE.findall(log_text)
  return float(losses[-1][0]) if losses else None


def _reports(log_text):
  """(metric name, step, value) of every metric report, in log order."""
  for name, step, value in METRIC_RE.findall(log_text):
    yield name, int(step), float(value)
  for step, pairs in SAVED_DICT_RE.findall(log_text):
    for pair in pairs.split(", "):
      name, _, value = pair.partition(" = ")
      if name in ("neg_log_perplexity", "token_accuracy", "loss"):
        yield name, int(step), float(value)


def metrics(log_text):
  """{metric name: (step, value)}, the last report of each."""
  return {name: (step, value) for name, step, value in _reports(log_text)}


def metric_curve(log_text, name):
  """{step: value} of every report of metric `name` (one per checkpoint)."""
  return {step: value for n, step, value in _reports(log_text) if n == name}


def checkpoint_parameters(model_dir):
  """Model parameters in the latest checkpoint (optimizer slots excluded)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  shapes = tf.train.load_checkpoint(model_dir).get_variable_to_shape_map()
  return int(sum(np.prod(s) for n, s in shapes.items()
                 if "_slot_" not in n and n != "global_step"))
