"""Every analysis command refuses a diverged (NaN/Inf) or corrupt checkpoint
in one line, and --step picks another (checkpoints written here, no training).
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from synth_mtf import checkpoints
from synth_mtf import cli

R = "encoder/block_000/layer_000/SynthesizerAttention/random/R"
R_DEC = "decoder/block_000/layer_000/SynthesizerAttention/random/R"


def save(model_dir, values_by_step, dtype=tf.float32):
  """One checkpoint per step of {name: array}."""
  for step, values in values_by_step.items():
    with tf.Graph().as_default():
      variables = [tf.compat.v1.get_variable(n, initializer=tf.cast(
          v.astype(np.float32), dtype)) for n, v in values.items()]
      with tf.compat.v1.Session() as s:
        s.run(tf.compat.v1.global_variables_initializer())
        tf.compat.v1.train.Saver(variables, max_to_keep=None).save(
            s, os.path.join(model_dir, "model.ckpt"), global_step=step)


@pytest.fixture
def diverged(tmp_path):
  """Steps 10 and 20 finite, 30 with NaN in one table and Inf in another."""
  rng = np.random.RandomState(0)
  good = {R: rng.randn(2, 4, 4), R_DEC: rng.randn(2, 4, 4)}
  bad = {R: np.full((2, 4, 4), np.nan), R_DEC: good[R_DEC].copy()}
  bad[R_DEC][0, 0, 0] = np.inf
  model_dir = str(tmp_path / "m")
  save(model_dir, {10: good, 20: good, 30: bad})
  return model_dir, good


COMMANDS = [["attention", "--out_dir", "OUT"], ["alpha", "--out_dir", "OUT"],
            ["histogram", "--out_dir", "OUT"], ["locality"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_diverged_checkpoint_is_refused_in_one_line(diverged, tmp_path,
                                                      command, capsys):
  model_dir, _ = diverged
  argv = [a.replace("OUT", str(tmp_path / "out")) for a in command]
  with pytest.raises(SystemExit) as e:
    cli.main(argv[:1] + ["--model_dir", model_dir] + argv[1:])
  assert e.value.code == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1, err
  assert ("%s has values that are not finite (NaN/Inf; the run diverged) in "
          "2 variables: %s, %s; the last finite checkpoint is step 20: pass "
          "--step 20." % (os.path.join(model_dir, "model.ckpt-30"), R_DEC, R)
          in err), err
  assert not os.path.exists(tmp_path / "out" / "attention.npz")


def test_step_picks_a_finite_checkpoint(diverged, tmp_path):
  model_dir, good = diverged
  cli.main(["attention", "--model_dir", model_dir, "--step", "20",
            "--out_dir", str(tmp_path)])
  maps = np.load(str(tmp_path / "attention.npz"))
  z = good[R] - good[R].max(-1, keepdims=True)
  np.testing.assert_allclose(maps["encoder/0"],
                             np.exp(z) / np.exp(z).sum(-1, keepdims=True),
                             atol=1e-6)


def test_no_finite_checkpoint_says_so(tmp_path, capsys):
  """bfloat16 too, as T5 keeps its variables (no numpy floating type)."""
  model_dir = str(tmp_path / "m")
  save(model_dir, {5: {R: np.full((2, 4, 4), np.inf)}}, tf.bfloat16)
  assert tf.train.load_checkpoint(model_dir).get_variable_to_dtype_map()[
      R] == tf.bfloat16
  with pytest.raises(SystemExit):
    cli.main(["attention", "--model_dir", model_dir, "--out_dir",
              str(tmp_path)])
  assert "no earlier checkpoint is finite" in capsys.readouterr().err


@pytest.mark.parametrize("part", ["data", "index"])
def test_a_truncated_file_is_named_with_the_way_out(diverged, tmp_path, part,
                                                    capsys):
  model_dir, _ = diverged
  (name,) = [n for n in os.listdir(model_dir)
             if n.startswith("model.ckpt-20.%s" % part)]
  with open(os.path.join(model_dir, name), "r+b") as f:
    f.truncate(10)
  with pytest.raises(SystemExit):
    cli.main(["alpha", "--model_dir", model_dir, "--step", "20",
              "--out_dir", str(tmp_path)])
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1, err
  assert ("%s is truncated or corrupt. Pick another step (checkpoints: "
          "[10, 20, 30])." % os.path.join(model_dir, name)) in err, err
  # the NaN check of step 30 skips the unreadable 20 for the last finite one
  with pytest.raises(SystemExit):
    cli.main(["alpha", "--model_dir", model_dir, "--out_dir", str(tmp_path)])
  assert "the last finite checkpoint is step 10" in capsys.readouterr().err


def test_steps_are_the_checkpoint_files(tmp_path):
  for name in ("model.ckpt-7.index", "model.ckpt-12.index",
               "model.ckpt-12.data-00000-of-00001", "model.ckpt-3.meta",
               "xmodel.ckpt-9.index"):
    (tmp_path / name).write_text("")
  assert checkpoints.steps(str(tmp_path)) == [7, 12]
  assert checkpoints.latest_step(str(tmp_path)) == 12
  assert checkpoints.latest_step(str(tmp_path / "absent")) == 0
