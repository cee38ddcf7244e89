"""Run one SynthesizerAttention layer (or a tiny model) on a mesh, in TF1 graphs.

Shared by the tests: builds an mtf graph around the layer with a hand-made
transformer.Context, lowers it on a placement mesh and returns NumPy outputs,
gradients and the variables' values, so tests can compare with independent NumPy
references.
"""

import types

import mesh_tensorflow as mtf
from mesh_tensorflow.transformer import transformer
import numpy as np
import tensorflow.compat.v1 as tf

from synth_mtf.attention import SynthesizerAttention

tf.disable_v2_behavior()

BATCH, LENGTH, D_MODEL = "batch", "length", "d_model"


def fake_model(d_model, autoregressive=False):
  return types.SimpleNamespace(
      model_dim=mtf.Dimension(D_MODEL, d_model), ensemble_dims=[],
      ensemble_dim=None, fully_autoregressive=autoregressive, layout=None,
      mesh_shape=None)


def make_mesh_impl(mesh_shape="", layout="", num_devices=1):
  shape = mtf.convert_to_shape(mesh_shape)
  return mtf.placement_mesh_impl.PlacementMeshImpl(
      shape, mtf.convert_to_layout_rules(layout), [""] * max(1, shape.size))


# Variables stored with one (heads * d_kv) dim, as mtf's attention stores them:
# name -> the axis to expand to (heads, d_kv) for the NumPy references.
COMBINED_AXIS = {"q": 1, "k": 1, "v": 1, "W1": 1, "o": 0, "W2": 0, "WA": 0,
                 "WB": 0}


def expand_heads(values, heads, kv):
  out = {}
  for name, val in values.items():
    axis = COMBINED_AXIS.get(name.rsplit("/", 1)[-1])
    if axis is not None and val.ndim == 2 and val.shape[axis] == heads * kv:
      val = val.reshape(val.shape[:axis] + (heads, kv) + val.shape[axis + 1:])
    out[name] = val
  return out


def call_layer(layer, mesh, x, sequence_id=None, causal=False, mode="eval",
               activation_dtype=tf.float32):
  """layer.call on x [batch, length, d_model] (NumPy) imported into mesh, with
  the Context a transformer stack would give it; -> float32 y (mtf)."""
  b, n, d = x.shape
  batch_dim = mtf.Dimension(BATCH, b)
  length_dim = mtf.Dimension(LENGTH, n)
  model_dim = mtf.Dimension(D_MODEL, d)
  mx = mtf.import_tf_tensor(mesh, tf.constant(x), [batch_dim, length_dim,
                                                  model_dim])
  mx = mtf.cast(mx, activation_dtype)
  positions = mtf.range(mesh, length_dim, tf.int32)
  seq = None
  if sequence_id is not None:
    seq = mtf.import_tf_tensor(mesh, tf.constant(np.asarray(sequence_id,
                                                            np.int32)),
                               [batch_dim, length_dim])
  context = transformer.Context(
      model=fake_model(d, causal), mesh=mesh, batch_dims=[batch_dim],
      length_dim=length_dim,
      variable_dtype=mtf.VariableDType(tf.float32, tf.float32,
                                       activation_dtype),
      mode=mode, position=positions, position_is_default=True,
      sequence_id=seq, read_priority=positions if causal else None,
      write_priority=positions if causal else None)
  with tf.variable_scope("layer"):
    return mtf.cast(layer.call(context, mx), tf.float32)


def run_layer(layer, x, sequence_id=None, causal=False, mode="eval",
              mesh_shape="", layout="", grads=False, seed=1,
              activation_dtype=tf.float32, var_values=None,
              optimizer_slots=False):
  """Full (non-incremental) call of `layer` on x [batch, length, d_model].

  Returns dict(y=..., vars={name: value}, grads={name: d sum(y*w)/d var}).
  var_values: optional {name: array} assigned before running (to share weights
  between runs on different meshes).
  optimizer_slots: also build T5's Adafactor update (needs grads) and return
  out["slots"] = {slot variable name: shape}.
  """
  x = np.asarray(x, np.float32)
  b, n, d = x.shape
  graph = tf.Graph()
  with graph.as_default():
    tf.set_random_seed(seed)
    mtf_graph = mtf.Graph()
    mesh = mtf.Mesh(mtf_graph, "mesh")
    y = call_layer(layer, mesh, x, sequence_id, causal,
                   tf.estimator.ModeKeys.TRAIN if grads else mode,
                   activation_dtype)
    outputs = [y]
    var_list = list(mtf_graph.trainable_variables)
    if grads:
      w = mtf.import_tf_tensor(
          mesh, tf.constant(np.random.RandomState(7).randn(b, n, d)
                            .astype(np.float32)), y.shape)
      loss = mtf.reduce_sum(y * w)
      gs = mtf.gradients([loss], [v.outputs[0] for v in var_list])
      outputs += gs
      if optimizer_slots:
        mtf.optimize.AdafactorOptimizer().apply_grads(gs, var_list)
    slots = {v.name: v.shape.to_integer_list for v in mtf_graph.all_variables
             if "_slot_" in v.name}
    mesh_impl = make_mesh_impl(mesh_shape, layout)
    lowering = mtf.Lowering(mtf_graph, {mesh: mesh_impl})
    tf_out = [lowering.export_to_tf_tensor(t) for t in outputs]
    master = {v.name.split(":")[0]: v for v in tf.global_variables()}
    assigns = []
    for name, val in (var_values or {}).items():
      hits = [k for k in master if k == name or k.endswith("/" + name)]
      assert len(hits) == 1, (name, sorted(master))
      var = master[hits[0]]  # stored shape: (heads, d_kv) pairs combined
      assigns.append(tf.assign(var, np.reshape(val, var.shape.as_list())))
    restore = lowering.copy_masters_to_slices()
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      if assigns:
        sess.run(assigns)
      sess.run(restore)
      res = sess.run(tf_out)
      values = sess.run(master)
  out = {"y": res[0], "vars": expand_heads(values, layer.num_heads,
                                           layer.kv_dim.size)}
  if grads:
    out["grads"] = {v.name: g for v, g in zip(var_list, res[1:])}
  if optimizer_slots:
    out["slots"] = slots
  return out


def var(out, suffix):
  """The one variable whose name ends with suffix."""
  hits = [v for k, v in out["vars"].items() if k.endswith(suffix)]
  assert len(hits) == 1, (suffix, sorted(out["vars"]))
  return hits[0]


def lm_full_vs_incremental(layer_fn, tokens, vocab=11, d_model=8, seed=3,
                           activation_dtype=tf.float32, batch_positions=False,
                           mesh_shape="", layout=""):
  """Logits of a 1-block decoder-only LM: teacher-forced full pass and an
  incremental decode (the state handling of Unitransformer.sample_autoregressive,
  unrolled in Python), on the same weights. Returns (full, incremental), each
  [batch, length, vocab]. batch_positions: the decode position is a [batch]
  tensor, as sample_autoregressive makes it (else a scalar)."""
  from mesh_tensorflow.transformer import transformer_layers  # pylint: disable=g-import-not-at-top
  tokens = np.asarray(tokens, np.int32)
  b, n = tokens.shape
  graph = tf.Graph()
  with graph.as_default():
    tf.set_random_seed(seed)
    mtf_graph = mtf.Graph()
    mesh = mtf.Mesh(mtf_graph, "mesh")
    batch_dim, length_dim = mtf.Dimension(BATCH, b), mtf.Dimension(LENGTH, n)
    attn = layer_fn()
    attn.set_name("layer_000")
    ffn = transformer_layers.DenseReluDense(hidden_size=16)
    ffn.set_name("layer_001")
    model = transformer.Unitransformer(
        layer_stack=transformer.LayerStack(
            [attn, ffn],
            sublayers_initial=[],
            sublayers_per_layer=[transformer.sublayer_rms_norm,
                                 transformer.sublayer_call_layer,
                                 transformer.sublayer_residual],
            sublayers_final=[transformer.sublayer_rms_norm]),
        d_model=d_model,
        input_vocab_size=vocab, output_vocab_size=vocab, autoregressive=True,
        max_length=n, positional_embedding=False, name="decoder")
    vdt = mtf.VariableDType(tf.float32, tf.float32, activation_dtype)
    targets = mtf.import_tf_tensor(mesh, tf.constant(tokens),
                                   [batch_dim, length_dim])
    inputs = transformer.autoregressive_inputs(targets)
    full, _ = model.call_simple(inputs=inputs, targets=None,
                                compute_loss=False,
                                mode=tf.estimator.ModeKeys.EVAL,
                                variable_dtype=vdt)
    length_range = mtf.range(mesh, length_dim, tf.int32)
    shared = None  # a Unitransformer alone shares no embedding
    first = transformer.Context(
        model=model, mesh=mesh, batch_dims=[batch_dim], length_dim=length_dim,
        variable_dtype=vdt, mode="first_part", position=length_range,
        position_is_default=True, new_states=[], initial_position=0,
        sequence_id=None, constant_states=[], shared_params=shared,
        write_priority=length_range, read_priority=length_range, inputs=inputs)
    with tf.variable_scope(model.name, reuse=True):
      model._call_internal(first, inputs)  # pylint: disable=protected-access
    states = [mtf.zeros_like(t) for t in first.new_states]
    steps = []
    for t in range(n):
      position = mtf.constant(mesh, t, dtype=tf.int32)
      if batch_positions:
        position = mtf.broadcast(position, [batch_dim])
      step_in = mtf.gather(inputs, t, length_dim)
      ctx = transformer.Context(
          model=model, mesh=mesh, batch_dims=[batch_dim],
          length_dim=length_dim, variable_dtype=vdt, mode="incremental",
          position=position, states=states, new_states=[], sequence_id=None,
          constant_states=first.constant_states, shared_params=shared,
          write_priority=length_range, read_priority=position, inputs=step_in)
      with tf.variable_scope(model.name, reuse=True):
        steps.append(model._call_internal(ctx, step_in))  # pylint: disable=protected-access
      states = ctx.new_states
    outs = [mtf.cast(full, tf.float32)] + [mtf.cast(s, tf.float32)
                                           for s in steps]
    lowering = mtf.Lowering(mtf_graph,
                            {mesh: make_mesh_impl(mesh_shape, layout)})
    tf_out = [lowering.export_to_tf_tensor(t) for t in outs]
    state_sizes = [int(np.prod(s.shape.to_integer_list)) for s in first.new_states]
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      sess.run(lowering.copy_masters_to_slices())
      res = sess.run(tf_out)
  return res[0], np.stack(res[1:], axis=1), state_sizes


# ---- the small layer most tests use ------------------------------------------

D, H, KV, N = 8, 2, 4, 8  # d_model, heads, d_kv, max_length
VARIANTS = [["random"], ["fixed_random"], ["factorized_random"], ["dense"],
            ["factorized_dense"], ["dot_product"], ["random", "dense"],
            ["random", "dot_product"], ["dense", "dot_product"],
            ["factorized_random", "dot_product"],
            ["random", "factorized_dense", "dot_product"]]
# two rows: a packed row (segments 1, 2 and padding 0) and a full row
SEQ = [[1, 1, 1, 2, 2, 2, 2, 0], [1, 1, 1, 1, 1, 1, 1, 1]]


def make_layer(kinds, **kw):
  return SynthesizerAttention(synthesizers=kinds, max_length=N, num_heads=H,
                              key_value_size=KV, **kw)


def alpha_values(kinds):
  """Distinct alpha per head, so a test fails if alpha were shared or unused."""
  if len(kinds) < 2:
    return None
  a = np.random.RandomState(5).randn(H, len(kinds)).astype(np.float32) * 2
  return {"alpha": a}


def x_input(b=2, n=8, seed=0):
  return np.random.RandomState(seed).randn(b, n, D).astype(np.float32)
