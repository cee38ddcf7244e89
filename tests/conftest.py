import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CLI = os.path.join(os.path.dirname(sys.executable), "t5_mesh_transformer")
# The tiny Synthesizer T5 of the stock-CLI tests: the main job's task and
# model (experiments/demo_reverse.gin), 3 steps of batch 8, checkpoint at 3.
TINY_T5_PARAMS = ["utils.run.batch_size=('sequences_per_batch', 8)",
                  "utils.run.save_checkpoints_steps=3",
                  "utils.run.train_steps=3"]


def run_stock_cli(model_dir, gin_files, params):
  """t5_mesh_transformer on the main job's task with `gin_files` and
  `params` (gin_param strings); -> its log, asserting it succeeded."""
  cmd = [CLI, "--model_dir=%s" % model_dir, "--module_import=synth_mtf",
         "--gin_file=experiments/demo_reverse.gin"]
  cmd += ["--gin_file=%s" % f for f in gin_files]
  cmd += ["--gin_param=%s" % p for p in params]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
  log = proc.stdout + proc.stderr
  assert proc.returncode == 0, log[-4000:]
  return log


@pytest.fixture(scope="session")
def trained_tiny_t5(tmp_path_factory):
  """trained_tiny_t5(config) -> the model dir of the tiny T5 with
  gin/models/synthesizer/<config>.gin trained by the stock CLI, once per test
  session (per xdist worker), for the tests that only read or evaluate it:
  training the same model again in each of them would add nothing."""
  dirs = {}

  def model_dir(config):
    if config not in dirs:
      d = str(tmp_path_factory.mktemp("tiny_t5_" + config) / "m")
      run_stock_cli(d, ["models/synthesizer/%s.gin" % config], TINY_T5_PARAMS)
      dirs[config] = d
    return dirs[config]

  return model_dir
