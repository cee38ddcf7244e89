"""Run the stock t5_mesh_transformer CLI as a subprocess and read its logs.

Shared by the main job (demo.py), the sweeps (sweep.py) and the benchmarks.
"""

import ctypes
import os
import re
import signal
import statistics
import subprocess
import sys
import time

import numpy as np

STEP_RE = re.compile(r"tf_loss\[([0-9.eE+-]+)\]\[(\d+)\]")
RATE_RE = re.compile(r"global_step/sec: ([0-9.]+)")
METRIC_RE = re.compile(r"INFO:tensorflow:eval/(\S+) at step (\d+): ([0-9.eE+-]+)")
# perplexity_eval.gin reports through the estimator instead
SAVED_DICT_RE = re.compile(r"INFO:tensorflow:Saving dict for global step (\d+): "
                           r"(.*)")


class CliError(RuntimeError):
  pass


def cli_command(model_dir, gin_files, bindings=(), trainer=None):
  """The stock CLI's command line; `trainer`: another command to run it (a
  list), default the t5_mesh_transformer beside this Python."""
  cmd = list(trainer or [os.path.join(os.path.dirname(sys.executable),
                                      "t5_mesh_transformer")])
  cmd += ["--model_dir=" + model_dir, "--module_import=synth_mtf"]
  cmd += ["--gin_file=" + f for f in gin_files]
  cmd += ["--gin_param=" + b for b in bindings]
  return cmd


def run_cli(cmd, log_path, on_line=None, timeout=None, append=False,
            on_start=None):
  """Run the CLI, write its whole output to log_path (after what is there with
  `append`), feed lines to on_line, and on_start(pid) once it runs.

  The CLI dies with this process, whatever ends it (SIGKILL included), and
  runs in its own process group, so a leftover can be stopped as a whole.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  local = "://" not in log_path
  with tf.io.gfile.GFile(log_path, "a" if append else "w") as log:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            process_group=0,
                            preexec_fn=_dies_with(os.getpid()))
    try:
      if on_start:
        on_start(proc.pid)
      flushed = time.time()
      for line in proc.stdout:
        log.write(line)
        # a log that survives us (kill -9) up to its last line; a remote
        # one (gs://, each flush an upload) up to its last 10 seconds
        if local or time.time() > flushed + 10:
          log.flush()
          flushed = time.time()
        if on_line:
          on_line(line)
      rc = proc.wait(timeout=timeout)
    except BaseException:
      proc.kill()
      raise
  if rc:
    tail = read_log(log_path)[-3000:]
    raise CliError("t5_mesh_transformer failed (exit %d); full log: %s\n%s"
                   % (rc, log_path, tail))


def _dies_with(parent):
  """A preexec_fn: the child gets SIGKILL when `parent` dies (Linux
  PR_SET_DEATHSIG; elsewhere None: a rerun stops the leftover, see claims)."""
  if not sys.platform.startswith("linux"):
    return None
  # looked up now: no dlopen in the child, forked from a threaded process
  prctl = ctypes.CDLL(None, use_errno=True).prctl

  def preexec():
    prctl(1, signal.SIGKILL)  # 1: PR_SET_DEATHSIG
    if os.getppid() != parent:  # the parent died before prctl
      os._exit(1)  # pylint: disable=protected-access
  return preexec


def read_log(path):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with tf.io.gfile.GFile(path) as f:
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
