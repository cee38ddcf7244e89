"""synth-mtf analysis commands on tiny checkpoints trained here (slow: two stock
CLI runs); exported matrices vs the checkpoint read independently."""

import ast
import operator
import os
import re
import struct
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from synth_mtf import analysis
from synth_mtf import cli

pytestmark = pytest.mark.slow
CLI = os.path.join(os.path.dirname(sys.executable), "t5_mesh_transformer")
TEXT = "reverse: a b c"


def train(model_dir, config, steps=20):
  cmd = [CLI, "--model_dir=" + model_dir, "--module_import=synth_mtf",
         "--gin_file=experiments/demo_reverse.gin",
         "--gin_file=models/synthesizer/%s.gin" % config,
         "--gin_param=utils.run.train_steps = %d" % steps,
         "--gin_param=utils.run.save_checkpoints_steps = 10",
         "--gin_param=utils.run.batch_size = ('sequences_per_batch', 8)",
         "--gin_param=max_length = 16",
         "--gin_param=utils.run.sequence_length = "
         "{'inputs': 16, 'targets': 16}"]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return model_dir


@pytest.fixture(scope="module")
def random_dir(tmp_path_factory):
  return train(str(tmp_path_factory.mktemp("rand") / "m"), "random")


@pytest.fixture(scope="module")
def mixture_dir(tmp_path_factory):
  return train(str(tmp_path_factory.mktemp("mix") / "m"), "random_plus_dense")


def ckpt(model_dir):
  r = tf.train.load_checkpoint(tf.train.latest_checkpoint(model_dir))
  return {n: r.get_tensor(n) for n in r.get_variable_to_shape_map()}


def softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def png_size(path):
  with open(path, "rb") as f:
    head = f.read(24)
  assert head[:8] == b"\x89PNG\r\n\x1a\n"
  return struct.unpack(">II", head[16:24])


def test_attention_maps_are_softmax_of_the_checkpoint(random_dir, tmp_path):
  cli.main(["attention", "--model_dir", random_dir, "--out_dir", str(tmp_path)])
  maps = np.load(str(tmp_path / "attention.npz"))
  v = ckpt(random_dir)
  assert sorted(maps.files) == ["decoder/0", "decoder/1", "encoder/0",
                                "encoder/1"]
  for key in maps.files:
    stack, block = key.split("/")
    r = v["%s/block_%03d/layer_000/SynthesizerAttention/random/R"
          % (stack, int(block))].astype(np.float64)
    if stack == "decoder":  # causal: position i sees j <= i
      r = np.where(np.tril(np.ones(r.shape[1:], bool)), r, -np.inf)
    np.testing.assert_allclose(maps[key], softmax(r), atol=1e-6)
  for stack in ("encoder", "decoder"):
    w, h = png_size(str(tmp_path / ("attention_%s.png" % stack)))
    cell = analysis.CELL * analysis.DPI
    assert (round(w / cell), round(h / cell)) == (4, 2)  # 4 heads x 2 layers


def test_attention_on_text_agrees_with_the_table(random_dir):
  """The model-run path (used for Dense) on an unpadded input of length L gives
  softmax(R[:L, :L]) in the encoder, as the formula says."""
  maps, ids = analysis.attention_on_text(random_dir, TEXT)
  n = len(ids)
  r = ckpt(random_dir)["encoder/block_001/layer_000/SynthesizerAttention/"
                       "random/R"][:, :n, :n].astype(np.float64)
  np.testing.assert_allclose(maps[("encoder", 1)], softmax(r), atol=1e-5)


def test_dense_mixture_needs_text_then_gives_distributions(mixture_dir,
                                                          tmp_path, capsys):
  with pytest.raises(SystemExit):
    cli.main(["attention", "--model_dir", mixture_dir, "--out_dir",
              str(tmp_path)])
  assert "pass --text" in capsys.readouterr().err
  cli.main(["attention", "--model_dir", mixture_dir, "--text", TEXT,
            "--layer", "decoder/1", "--out_dir", str(tmp_path)])
  att = np.load(str(tmp_path / "attention.npz"))["decoder/1"]
  np.testing.assert_allclose(att.sum(-1), 1.0, atol=1e-5)
  assert np.abs(np.triu(att, 1)).max() < 1e-6  # causal


def test_alpha_table_is_softmax_of_alpha(mixture_dir, tmp_path, capsys):
  cli.main(["alpha", "--model_dir", mixture_dir, "--out_dir", str(tmp_path)])
  out = capsys.readouterr().out
  assert "| layer | head | random | dense |" in out
  a = softmax(ckpt(mixture_dir)[
      "encoder/block_000/layer_000/SynthesizerAttention/alpha"].astype(
          np.float64))
  for h in range(a.shape[0]):
    assert "| encoder 0 | %d | %.3f | %.3f |" % (h, a[h, 0], a[h, 1]) in out
  assert png_size(str(tmp_path / "alpha.png"))[0] > 100


def test_histogram_init_vs_trained_two_models(random_dir, mixture_dir,
                                              tmp_path, capsys):
  cli.main(["histogram", "--model_dir", random_dir, "--model_dir", mixture_dir,
            "--text", TEXT, "--out_dir", str(tmp_path)])
  out = capsys.readouterr().out
  for model in (random_dir, mixture_dir):
    name = "/".join(model.split(os.sep)[-2:])
    for when in ("init", "trained"):
      assert out.count("| %s %s |" % (name, when)) == 4  # 4 layers
  assert png_size(str(tmp_path / "histogram.png"))[0] > 100


def test_locality_score(random_dir, capsys):
  cli.main(["locality", "--model_dir", random_dir, "--layer", "encoder/0",
            "--window", "1"])
  out = capsys.readouterr().out
  r = ckpt(random_dir)["encoder/block_000/layer_000/SynthesizerAttention/"
                       "random/R"].astype(np.float64)
  att = softmax(r)
  n = att.shape[-1]
  near = np.abs(np.arange(n)[:, None] - np.arange(n)[None]) <= 1
  for h in range(att.shape[0]):
    score = (att[h] * near).sum(-1).mean()
    assert re.search(r"\| encoder 0 \| %d \| %.3f \|" % (h, score), out)


def table_1(formula, symbols):
  """A formula as `params` prints it ('2*h*N*k (k=8)'), worked out by hand:
  + * ^ and brackets over the symbols, the constants in brackets and
  integers."""
  text, _, constants = formula.partition(" (")
  symbols = dict(symbols)
  for item in constants.rstrip(")").split(", ") if constants else []:
    name, number = item.split("=")
    symbols[name] = int(number)
  ops = {ast.Add: operator.add, ast.Mult: operator.mul, ast.Pow: operator.pow}

  def value(node):
    if isinstance(node, ast.BinOp):
      return ops[type(node.op)](value(node.left), value(node.right))
    if isinstance(node, ast.Name):
      return symbols[node.id]
    assert isinstance(node, ast.Constant), ast.dump(node)
    return node.value

  return value(ast.parse(text.replace("^", "**"), mode="eval").body)


def test_params_follow_table_1_and_the_graph(capsys):
  for config in ("factorized_dense", "factorized_random_plus_vanilla",
                 "random_plus_dense"):
    rows, meta = analysis.parameter_table(
        ["models/t5.1.1.tiny.gin", "models/synthesizer/%s.gin" % config],
        ["SynthesizerAttention.max_length = 16"])
    synth = [r for r in rows if r["component"].startswith("Synthesizer")]
    assert synth
    symbols = {"d": meta["d_model"], "h": meta["heads"], "d_kv": meta["d_kv"],
               "N": meta["max_length"],
               "n_functions": len(meta["synthesizers"])}
    for r in synth:
      assert r["formula_value"] == r["per_layer"], r
      assert table_1(r["formula"], symbols) == r["per_layer"], r
    assert meta["total"] == sum(r["total"] for r in rows)
  cli.main(["params", "--gin_file", "models/t5.1.1.tiny.gin", "--gin_file",
            "models/synthesizer/dense.gin"])
  assert "d*h*d_kv + h*d_kv*N" in capsys.readouterr().out


def test_errors(tmp_path, random_dir, capsys):
  def fails(argv, pattern):
    with pytest.raises(SystemExit):
      cli.main(argv)
    assert re.search(pattern, capsys.readouterr().err), pattern

  empty = tmp_path / "empty"
  empty.mkdir()
  fails(["alpha", "--model_dir", str(empty), "--out_dir", str(tmp_path)],
        r"no checkpoint in .*empty.*Train with t5_mesh_transformer")
  fails(["attention", "--model_dir", random_dir, "--layer", "encoder/7",
         "--out_dir", str(tmp_path)], r"no synthesizer layer 'encoder/7'")
  fails(["attention", "--model_dir", random_dir, "--head", "9",
         "--out_dir", str(tmp_path)], r"no head 9: the layers have heads 0\.\.3")
  fails(["alpha", "--model_dir", random_dir, "--out_dir", str(tmp_path)],
        r"is not a mixture")
  vanilla = tmp_path / "vanilla"
  with tf.Graph().as_default():
    tf.compat.v1.get_variable(
        "encoder/block_000/layer_000/SelfAttention/q", [4, 4])
    with tf.compat.v1.Session() as s:
      s.run(tf.compat.v1.global_variables_initializer())
      tf.compat.v1.train.Saver().save(s, str(vanilla / "model.ckpt"),
                                      global_step=5)
  fails(["attention", "--model_dir", str(vanilla), "--out_dir", str(tmp_path)],
        r"no SynthesizerAttention variables: it was written by a model without "
        r"synthesizers \(its attention layers: \['SelfAttention'\]\)")
