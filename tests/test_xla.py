"""Every catalogue variant compiles under XLA (the compiler a TPU runs every
step through) and computes what TensorFlow's runtime computes.

One graph per variant and activation dtype holds what a TPU job runs: a
training step (forward, mtf.gradients, Adafactor's update), the eval forward and
greedy incremental decoding (Bitransformer.decode, mtf's while_loop), on packed
inputs (two examples and padding in one row). It is built twice, once wrapped
in xla.compile and once for TF's runtime, both start from the same variable
values, and the test compares: training and eval loss, the variables and
Adafactor's slots after the update, and the decoded ids token for token.

The step starts from a warmed optimizer state (global_step 10, second moments
set to each slot's mean from a first TF step): at step 0 Adafactor's update is
lr * sign(g) (its second moment is g^2), so a gradient near zero whose rounding
differs between two compilers flips a whole update; warmed, the update is a
smooth function of the gradient, and a tolerance on it means something.

Built in the mode the CLI trains in (tf.disable_v2_behavior: ref variables),
where TF's runtime would let Adafactor's in-place update of a variable race
with a backward op still reading it (two TF runs of one step differed in the
embedding's slot); xla.build's TF reference orders every update after
every gradient.
"""

import os

import numpy as np
import pytest

# LLVM's optimisation level 0 halves each compile (9 -> 5 s measured); XLA's
# own passes, which decide what is computed and which buffers exist, run as
# always. Read at the process's first XLA compile.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import gin  # pylint: disable=g-import-not-at-top
import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
from synth_mtf import model_graph
from synth_mtf import variants
from synth_mtf import xla

tf.disable_v2_behavior()  # the mode the CLI trains in (ref variables, TF1 cond)

# tiny dims: one layer per stack keeps each XLA compile to a few seconds
TINY = ["d_model = 16", "num_layers = 1", "d_ff = 32", "num_heads = 2",
        "d_kv = 8", "max_length = 8", "SynthesizerAttention.max_length = 8",
        "LinformerAttention.max_length = 8", "dropout_rate = 0.0"]
BATCH, LENGTH, VOCAB = 2, 8, 40
# (losses rtol, update tolerance as a fraction of the variable's largest
# update). bfloat16: measured worst 8% (a LayerNorm scale's second moment, whose
# gradient sums many bfloat16 products of both signs), a wrong gradient is O(1).
TOLERANCE = {"float32": (1e-5, 1e-3), "bfloat16": (1e-2, 0.15)}
# plus this fraction of each value: a step at rounding level (a second moment
# already near its target, whose g^2 differs in the 6th digit in float32; with
# bfloat16 activations a gradient summed over many bfloat16 products differs
# by a few %, its g^2 twice that: measured 1.5% of a mixture's alpha slot, 7%
# of the one-value slot of a DyConv/LightConv kernel tap)
FLOOR = {"float32": 5e-5, "bfloat16": 5e-5}
SLOT_FLOOR = {"float32": 5e-5, "bfloat16": 0.15}
WARM_STEP = 10


def config(v):
  """(gin files, bindings): the encoder-decoder file, or for variants that
  only have one (Linformer) the encoder-only classifier of Table 7."""
  kind = "bi" if v.gin else "encoder_only"
  return ["models/t5.1.1.tiny.gin", v.gin_file(kind)], list(v.bindings)


@pytest.fixture(autouse=True)
def _clear_gin():
  yield
  gin.clear_config(clear_constants=True)


def warm(before, after):
  """before's values with Adafactor's second moments set to the mean of
  `after`'s (a step from before) and global_step WARM_STEP."""
  out = dict(before)
  for name, value in after.items():
    if "_slot_v" in name:
      out[name] = np.full_like(value, value.mean() + 1e-12)
  out["global_step"] = np.array(WARM_STEP, before["global_step"].dtype)
  return out


def assert_same_step(tf_run, xla_run, dtype):
  loss_rtol, update_tol = TOLERANCE[dtype]
  (tf_got, before, tf_after), (xla_got, xla_before, xla_after) = tf_run, xla_run
  for name in ("loss", "eval_loss"):
    np.testing.assert_allclose(xla_got[name], tf_got[name], rtol=loss_rtol,
                               err_msg=name)
  np.testing.assert_array_equal(xla_got["decodes"], tf_got["decodes"])
  assert sorted(xla_after) == sorted(tf_after)
  for name, value in tf_after.items():
    np.testing.assert_array_equal(xla_before[name], before[name])
    if name == "global_step":
      continue
    start = np.asarray(before[name], np.float32)  # masters may be bfloat16
    step_tf = np.asarray(value, np.float32) - start
    step_xla = np.asarray(xla_after[name], np.float32) - start
    scale = np.abs(step_tf).max()
    if "_slot_v" in name and start.size > 1:  # the gradient reached it (one
      assert scale > 0, name  # value: its warm mean is its g^2, no step)
    if dtype == "bfloat16" and start.size == 1:
      # one value whose gradient is one sum near zero (DyConv's tap biases):
      # bfloat16 rounding moved its square up to 40% and flipped its sign
      # (measured), so only its second moment's scale is compared
      if "_slot_" in name:
        ratio = np.asarray(xla_after[name], np.float32) / np.asarray(
            value, np.float32)
        assert 0.5 < float(ratio.ravel()[0]) < 2.0, name
      continue
    floor = (SLOT_FLOOR if "_slot_" in name else FLOOR)[dtype]
    np.testing.assert_allclose(step_xla + start, step_tf + start, rtol=floor,
                               atol=update_tol * scale, err_msg=name)


# mesh-tensorflow's own Synthesizer with bfloat16 activations: XLA compiles it,
# but TF's runtime decodes otherwise (stock_D: the padded row from its first
# token; stock_R+V: one token) than the same graph does with float32
# activations, and XLA's bfloat16 decode is the float32 one, token for token
# (measured; also with --xla_allow_excess_precision=false). Without the decode,
# stock_D's step still misses the tolerance in one of Synthesizer/pi's 4096
# updates (1.45x). That layer computes its logits in bfloat16 (ours float32);
# which TF op diverges is not found yet (docs/reference.md).
UNEXPLAINED = {("stock_D", "bfloat16"), ("stock_R+V", "bfloat16")}


def cases():
  for v in variants.CATALOGUE:
    for dtype in ("float32", "bfloat16"):
      marks = [pytest.mark.xfail(reason="mtf's own layer, bfloat16: see "
                                 "UNEXPLAINED", strict=False)] if (
                                     v.label, dtype) in UNEXPLAINED else []
      yield pytest.param(v.label, dtype, marks=marks,
                         id="%s-%s" % (v.label, dtype))


@pytest.mark.slow
@pytest.mark.parametrize("label,dtype", list(cases()))
def test_variant_compiles_and_matches_tf(label, dtype):
  files, bindings = config(variants.get(label))
  model_graph.parse(files, bindings + TINY + [
      "utils.get_variable_dtype.activation_dtype = %r" % dtype])
  # Linformer refuses packed rows (its guard; see test_linformer.py)
  features = xla.packed_features(BATCH, LENGTH, VOCAB,
                                 packed=label != "Linformer")
  steps = {compiled: xla.build(features, VOCAB, compiled=compiled,
                               eval_and_decode=True)
           for compiled in (False, True)}
  _, init, first = xla.run(steps[False])
  start = warm(init, first)
  tf_run = xla.run(steps[False], start)
  xla_run = xla.run(steps[True], start)
  assert_same_step(tf_run, xla_run, dtype)


# --- layouts: a mesh of several processors under XLA ---------------------------

MESH = dict(mesh_shape="b:2,m:2", layout="batch:b,heads:m")
FLOAT32_MASTERS = ["utils.get_variable_dtype.activation_dtype = 'float32'",
                   "utils.get_variable_dtype.master_dtype = 'float32'"]


def masters(run, names):
  got, before, after = run
  return got, {k: before[k] for k in names}, {k: after[k] for k in names}


@pytest.mark.slow
@pytest.mark.parametrize("label", ["R", "FD", "D+V"])
def test_heads_split_mesh_compiles_and_matches_one_device(label):
  """batch and heads split 2 ways each (4 processors of mtf's placement mesh,
  all on this one device, as xla.compile needs): XLA's step equals TF's on one
  device. float32 masters, so that each processor's slices are exact copies
  of the one-device variables."""
  files, bindings = config(variants.get(label))
  model_graph.parse(files, bindings + TINY + FLOAT32_MASTERS)
  features = xla.packed_features(BATCH, LENGTH, VOCAB)
  one = xla.build(features, VOCAB, compiled=False, eval_and_decode=True)
  split = xla.build(features, VOCAB, compiled=True, eval_and_decode=True,
                    **MESH)
  assert any(k.endswith("_slice_3") for k in split.variables)  # 4 processors
  _, init, first = xla.run(one)
  start = warm(init, first)
  assert_same_step(xla.run(one, start),
                   masters(xla.run(split, start, to_masters=True), start),
                   "float32")


def test_xla_compile_cannot_span_two_devices():
  """Why the proof above keeps the mesh on one device: xla.compile makes one
  XlaLaunch op on one device, and TF refuses to feed it variables placed on
  another (here a second CPU device)."""
  files, bindings = config(variants.get("R"))
  model_graph.parse(files, bindings + TINY + FLOAT32_MASTERS)
  step = xla.build(xla.packed_features(BATCH, LENGTH, VOCAB), VOCAB,
                   mesh_shape="m:2", layout="heads:m",
                   devices=["/device:CPU:0", "/device:CPU:1"])
  config_2cpu = tf.ConfigProto(device_count={"CPU": 2})
  with tf.Session(graph=step.graph, config=config_2cpu) as sess:
    # TF places the whole graph at its first run, the initialiser's
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="incompatible resource devices.*XlaLaunch"):
      sess.run(step.init_ops[0])


# --- the TPU's own lowering --------------------------------------------------


@pytest.mark.parametrize("label", ["vanilla"] + [
    v.label for v in variants.synthesizers()])
def test_tpu_lowering_builds_and_stops_at_the_tpu(label):
  """mesh-tensorflow's TPU lowering (SimdMeshImpl, variables replicated per
  core) of the training step, inside tpu.rewrite with a one-core device
  assignment: every op of ours lowers and the graph builds; TF refuses to run
  it here, at the first op only a TPU has (no CPU kernel), nothing faked."""
  files, bindings = config(variants.get(label))
  model_graph.parse(files, bindings + TINY)
  step = xla.build(xla.packed_features(BATCH, LENGTH, VOCAB), VOCAB,
                   compiled="tpu")
  types = {op.type for op in step.graph.get_operations()}
  assert {"TPUReplicateMetadata", "TPUReplicatedOutput"} <= types
  with tf.Session(graph=step.graph) as sess:
    # the session takes in the whole graph at its first run, the initialiser's
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="No OpKernel was registered to support Op "
                       "'TPU(ReplicatedInput|ReplicateMetadata)'"):
      sess.run(step.init_ops[0])


@pytest.mark.slow
def test_xla_compiles_away_linformers_packing_guard():
  """Linformer refuses packed rows with a TF assert (baselines.py): TF's
  runtime raises, XLA drops asserts and trains on. On a TPU only the config
  (pack = False) protects a Linformer run; docs/reference.md says so."""
  files, bindings = config(variants.get("Linformer"))
  model_graph.parse(files, bindings + TINY)
  packed = xla.packed_features(BATCH, LENGTH, VOCAB, packed=True)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="LinformerAttention got a packed batch"):
    xla.run(xla.build(packed, VOCAB, compiled=False))
  got, _, _ = xla.run(xla.build(packed, VOCAB, compiled=True))
  assert np.isfinite(got["loss"])
