"""TPU's own lowering (mtf's SimdMeshImpl) of our layer, tried on this CPU.

No TPU here, and no TPU op is faked. What TF 2.12 allows without one: a
DeviceAssignment built from a stand-in Topology (numpy arrays: one task, two
cores) and tf.tpu.replicate, whose TPUReplicateContext gives mtf's
ReplicatedVariable its per-core variable handles. Inside it SimdMeshImpl lowers
the layer, and a tiny T5's whole training step, to TF ops with TPU collectives
and per-core slice variables; we assert what that graph says: the slice each
core holds under heads:model and the all-reduces the split costs, against the
dimension names and against mtf's own SelfAttention. Nothing runs: the cluster
is consumed only by TF's TPU graph rewrite, which needs TPU devices; the CPU
has no kernel for TPUReplicateMetadata.

The failure points of the other routes are TF's/mtf's, pinned here for our
layer and mtf's SelfAttention alike, so that an upgrade moving them is noticed.
"""

import gin
import mesh_tensorflow as mtf
from mesh_tensorflow.transformer import transformer_layers
import numpy as np
import pytest
import tensorflow.compat.v1 as tf
from tensorflow.python.compiler.xla import xla  # pylint: disable=g-direct-tensorflow-import
from tensorflow.python.tpu import device_assignment as device_assignment_lib  # pylint: disable=g-direct-tensorflow-import
from tensorflow.python.tpu import topology as topology_lib  # pylint: disable=g-direct-tensorflow-import
from tensorflow.python.tpu import tpu  # pylint: disable=g-direct-tensorflow-import

import harness
from harness import H, KV, make_layer, x_input  # pylint: disable=g-multiple-import
from synth_mtf import model_graph


@pytest.fixture(autouse=True)
def _clean_gin():
  # The layers here are built without parsing a config, so a binding another
  # test file left in this process (e.g. Dense.share_w2 = True) would change
  # them: start and end each test with gin empty.
  gin.clear_config(clear_constants=True)
  yield
  gin.clear_config(clear_constants=True)


CORES = 2
HEADS_SPLIT = "heads:model"
NO_TPU_KERNEL = ("No OpKernel was registered to support Op "
                 "'TPUReplicateMetadata'")

LAYERS = {
    "R": lambda: make_layer(["random"]),
    "FR": lambda: make_layer(["factorized_random"]),
    "D": lambda: make_layer(["dense"]),
    "R+V": lambda: make_layer(["random", "dot_product"]),
    "mtf SelfAttention": lambda: transformer_layers.SelfAttention(
        num_heads=H, key_value_size=KV),
}


def stand_in_device_assignment(cores=CORES):
  """Replica i on core i of a one-task, `cores`-core topology (no TPU asked)."""
  coords = np.array([[[0, 0, 0, i] for i in range(cores)]], np.int32)
  topology = topology_lib.Topology(mesh_shape=[1, 1, 1, cores],
                                   device_coordinates=coords)
  return device_assignment_lib.DeviceAssignment(
      topology, core_assignment=coords.reshape(cores, 1, 4))


def simd_lower(mtf_graph, mesh, layout, device_assignment):
  mesh_impl = mtf.simd_mesh_impl.SimdMeshImpl(
      mtf.convert_to_shape("model:%d" % CORES),
      mtf.convert_to_layout_rules(layout), None, device_assignment)
  # autostack=False: one slice variable per mtf variable (stacking same-shape
  # variables is an optimization of its own, not the layout's)
  return mtf.Lowering(mtf_graph, {mesh: mesh_impl}, autostack=False)


def layer_step(layer_fn, layout, device_assignment, optimizer=None):
  """A computation for tf.tpu.replicate / xla.compile: the layer's eval
  forward, lowered by SimdMeshImpl; -> a replicated scalar (sum(y * w)).
  optimizer: None, or "sgd" / "adafactor": a training step instead (the
  loss's gradients and the variables' update, which the scalar waits for)."""

  def computation():
    mtf_graph = mtf.Graph()
    mesh = mtf.Mesh(mtf_graph, "mesh")
    y = harness.call_layer(
        layer_fn(), mesh, x_input(),
        mode=tf.estimator.ModeKeys.TRAIN if optimizer else "eval")
    w = np.random.RandomState(7).randn(*y.shape.to_integer_list)
    # SimdMeshImpl exports only fully replicated tensors: a scalar
    loss = mtf.reduce_sum(y * mtf.import_tf_tensor(
        mesh, tf.constant(w.astype(np.float32)), y.shape))
    return lowered_step(mtf_graph, mesh, loss, optimizer, layout,
                        device_assignment)

  return computation


def lowered_step(mtf_graph, mesh, loss, optimizer, layout, device_assignment):
  """Optionally a training step on loss (its gradients and the update of
  every trainable variable), lowered by SimdMeshImpl; -> the tf loss, read
  after the updates."""
  updates = []
  if optimizer:
    var_list = mtf_graph.trainable_variables
    grads = mtf.gradients([loss], [v.outputs[0] for v in var_list])
    if optimizer == "sgd":
      updates = [mtf.assign_sub(v, 0.1 * g) for v, g in zip(var_list, grads)]
    else:
      updates = mtf.optimize.AdafactorOptimizer().apply_grads(grads, var_list)
  lowering = simd_lower(mtf_graph, mesh, layout, device_assignment)
  with tf.control_dependencies(
      [lowering.lowered_operation(u) for u in updates]):
    return tf.identity(lowering.export_to_tf_tensor(loss))


def replicate(computation, device_assignment):
  return tpu.replicate(computation, inputs=[[]] * CORES,
                       device_assignment=device_assignment)


def slice_variables(graph, mtf_names):
  """{mtf variable name: [(per-core slice shape, device, op name)]}: the
  slice variables SimdMeshImpl made for each, in core order."""
  tpu_vars = graph.get_collection("TPU_VAR")
  out = {}
  for name in mtf_names:
    out[name] = []
    for core in range(CORES):
      hits = [v for v in tpu_vars
              if v.name.endswith("%s_slice_%d:0" % (name, core))]
      assert len(hits) == 1, (name, core, [v.name for v in tpu_vars])
      out[name].append((hits[0].shape.as_list(), hits[0].device,
                        hits[0].op.name))
  return out


def named_split(shape, layout):
  """The per-core shape a layout gives, from the dimension names alone."""
  split = dict(r.split(":") for r in layout.split(";") if r)
  return [d.size // CORES if d.name in split else d.size for d in shape.dims]


def core_devices():
  return ["/task:0/device:TPU:%d" % core for core in range(CORES)]


def build(layer_fn, layout, optimizer=None):
  graph = tf.Graph()
  with graph.as_default():
    outs = replicate(layer_step(layer_fn, layout, stand_in_device_assignment(),
                                optimizer),
                     stand_in_device_assignment())
  return graph, outs


def mtf_variables(layer):
  """{name: mtf.Shape} of the layer's variables, built on a plain mesh."""
  with tf.Graph().as_default():
    mtf_graph = mtf.Graph()
    harness.call_layer(layer, mtf.Mesh(mtf_graph, "mesh"), x_input())
    return {v.name: v.shape for v in mtf_graph.all_variables}


def all_reduce_groups(graph):
  """The group_assignment of each CrossReplicaSum (TPU all-reduce) op."""
  return [tf.make_ndarray(op.inputs[1].op.get_attr("value")).tolist()
          for op in graph.get_operations() if op.type == "CrossReplicaSum"]


def replicated_variables(graph):
  """Sorted [slice variable names, by replica] of the variable handles passed
  into the TPU cluster (TPUReplicatedInput of resources)."""
  return sorted([i.op.name for i in op.inputs]
                for op in graph.get_operations()
                if op.type == "TPUReplicatedInput"
                and op.get_attr("T") == tf.resource)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_heads_split_slices_and_collectives(name):
  """Lowered for a 2-core TPU mesh with heads:model, each core holds half of
  every parameter of the layer (all are per head, R's [heads, N, N] included)
  and the forward pass needs exactly one all-reduce over both cores (the
  output projection's sum over heads), as mtf's own SelfAttention does.
  Replicated (no layout): nothing split, no all-reduce."""
  variables = mtf_variables(LAYERS[name]())
  for var_name, shape in variables.items():
    assert "heads" in shape.dimension_names, var_name

  graph, _ = build(LAYERS[name], HEADS_SPLIT)
  slices = slice_variables(graph, variables)
  for var_name, shape in variables.items():
    per_core = named_split(shape, HEADS_SPLIT)
    assert per_core != shape.to_integer_list
    assert [s[:2] for s in slices[var_name]] == [(per_core, d)
                                                 for d in core_devices()]
  assert all_reduce_groups(graph) == [[list(range(CORES))]]
  # the cluster reads each variable through one replicated handle made of
  # its slices, core i's on replica i (what xla.compile cannot give)
  assert replicated_variables(graph) == sorted(
      [s[2] for s in per_var] for per_var in slices.values())

  graph, _ = build(LAYERS[name], "")
  slices = slice_variables(graph, variables)
  for var_name, shape in variables.items():
    assert [s[:2] for s in slices[var_name]] == [
        (shape.to_integer_list, d) for d in core_devices()]
  assert all_reduce_groups(graph) == []


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_heads_split_training_step_communication(name):
  """A whole training step of the layer on heads:model: the backward pass and
  every weight gradient stay on their core, so the step's only all-reduce is
  the forward's (as for mtf's SelfAttention). Adafactor (unfactored at these
  tiny dims) adds its own two per variable: the RMS of the update (clipping)
  and of the parameter (its scale), each a mean over the whole split
  variable."""
  graph, _ = build(LAYERS[name], HEADS_SPLIT, "sgd")
  assert all_reduce_groups(graph) == [[list(range(CORES))]]
  num_vars = len(replicated_variables(graph))
  assert num_vars == len(mtf_variables(LAYERS[name]()))
  graph, _ = build(LAYERS[name], HEADS_SPLIT, "adafactor")
  assert all_reduce_groups(graph) == [[list(range(CORES))]] * (1 + 2 * num_vars)


# ---- where it stops: TF's and mtf's limits, the same for mtf's own layer ----

PINNED = ["R", "mtf SelfAttention"]


@pytest.mark.parametrize("name", PINNED)
def test_without_device_assignment_stops_in_laid_out_variable(name):
  """SimdMeshImpl places each core's slice with device_assignment.tpu_device."""
  with tf.Graph().as_default():
    with pytest.raises(AttributeError,
                       match="'NoneType' object has no attribute 'tpu_device'"):
      layer_step(LAYERS[name], HEADS_SPLIT, None)()


@pytest.mark.parametrize("name", PINNED)
def test_xla_compile_has_no_replicated_variable_handles(name):
  """xla.compile's context is an XLA one, but not a replication: mtf's
  ReplicatedVariable asks it for the per-core handles and it has none."""
  with tf.Graph().as_default():
    with pytest.raises(AttributeError, match="'XLACompileContext' object has "
                       "no attribute 'get_replicated_var_handle'"):
      xla.compile(layer_step(LAYERS[name], HEADS_SPLIT,
                             stand_in_device_assignment()))


@pytest.mark.parametrize("name", PINNED)
def test_without_replication_context_stops_at_the_all_reduce(name):
  """Outside a replication the forward lowers (reads fall back to core 0's
  slice), but TF places the whole graph at a session's first run and the CPU
  has no kernel for the TPU all-reduce."""
  with tf.Graph().as_default():
    total = layer_step(LAYERS[name], HEADS_SPLIT, stand_in_device_assignment())()
    with tf.Session() as sess:
      with pytest.raises(tf.errors.InvalidArgumentError,
                         match="No OpKernel was registered to support Op "
                         "'CrossReplicaSum'"):
        sess.run([tf.global_variables_initializer(), total])


@pytest.mark.parametrize("use_tpu,mlir_bridge", [(True, False), (False, False),
                                                 (True, True)])
@pytest.mark.parametrize("name", PINNED)
def test_replicated_layer_does_not_run_on_cpu(name, use_tpu, mlir_bridge):
  """tpu.replicate's cluster is consumed only by TF's TPU graph rewrite, which
  needs TPU devices: not with use_tpu=False (documented as "run on XLA's
  CPU/GPU backends"), nor with the MLIR TPU bridge asked for (it stays off
  without TPU devices). No kernel for TPUReplicateMetadata."""
  with tf.Graph().as_default():
    _, outs = tpu.split_compile_and_replicate(
        layer_step(LAYERS[name], HEADS_SPLIT, stand_in_device_assignment()),
        inputs=[[]] * CORES, device_assignment=stand_in_device_assignment(),
        use_tpu=use_tpu)
    config = tf.ConfigProto()
    config.experimental.enable_mlir_bridge = mlir_bridge
    with tf.Session(config=config) as sess:
      with pytest.raises(tf.errors.InvalidArgumentError, match=NO_TPU_KERNEL):
        sess.run([tf.global_variables_initializer(), outs])


def train_step(device_assignment):
  """The configured model's training step (loss, mtf.gradients, Adafactor),
  lowered by SimdMeshImpl with heads:model; -> a computation returning the
  loss after the updates, and a list that receives the mtf variables."""
  mtf_vars = []

  def computation():
    mtf_graph = mtf.Graph()
    mesh = mtf.Mesh(mtf_graph, "mesh")
    ids = mtf.import_fully_replicated(
        mesh, tf.constant(np.arange(16).reshape(2, 8) % 13 + 1, tf.int32),
        mtf.Shape([mtf.Dimension("batch", 2), mtf.Dimension("length", 8)]))
    _, loss = model_graph.call_model(
        ids, 64, tf.estimator.ModeKeys.TRAIN,
        mtf.VariableDType(tf.float32, tf.float32, tf.float32))
    tf_loss = lowered_step(mtf_graph, mesh, loss, "adafactor", HEADS_SPLIT,
                           device_assignment)
    mtf_vars.extend(mtf_graph.all_variables)
    return tf_loss

  return computation, mtf_vars


def parse_tiny_t5(gin_file):
  model_graph.parse(["models/t5.1.1.tiny.gin"] + ([gin_file] if gin_file else []),
                    ["num_layers = 1"])


TINY_T5 = ["models/synthesizer/random.gin", None]


@pytest.mark.parametrize("gin_file", TINY_T5)
def test_training_step_without_replication_context_cannot_update(gin_file):
  """Outside a replication mtf's update assigns to a ReplicatedVariable,
  which TF's Assign refuses (it reads as a tensor there)."""
  parse_tiny_t5(gin_file)
  try:
    with tf.Graph().as_default():
      computation, _ = train_step(stand_in_device_assignment())
      with pytest.raises(TypeError, match="'Assign' Op requires that input "
                         "'ref' be a mutable tensor"):
        computation()
  finally:
    gin.clear_config(clear_constants=True)


@pytest.mark.parametrize("gin_file", TINY_T5)
def test_training_step_builds_but_needs_a_tpu_to_run(gin_file):
  """A tiny T5 (ours, Syn(R); None: T5's own SelfAttention): the whole
  training step lowers inside tf.tpu.replicate, every variable and optimizer
  slot laid out per core by its dimension names. Nothing runs, not even the
  variables' initialization: TF places the whole graph at a session's first
  run, and the CPU has no kernel for TPUReplicateMetadata (on a TPU host the
  TPU graph rewrite consumes it and compiles the cluster)."""
  parse_tiny_t5(gin_file)
  try:
    graph = tf.Graph()
    with graph.as_default():
      computation, mtf_vars = train_step(stand_in_device_assignment())
      replicate(computation, stand_in_device_assignment())
      slices = slice_variables(graph, [v.name for v in mtf_vars])
      for v in mtf_vars:
        assert [s[:2] for s in slices[v.name]] == [
            (named_split(v.shape, HEADS_SPLIT), d) for d in core_devices()]
      attention = "SynthesizerAttention" if gin_file else "SelfAttention"
      assert any(attention in v.name and "heads" in v.shape.dimension_names
                 for v in mtf_vars)
      assert all(g == [list(range(CORES))] for g in all_reduce_groups(graph))
      with tf.Session() as sess:
        with pytest.raises(tf.errors.InvalidArgumentError, match=NO_TPU_KERNEL):
          sess.run(tf.global_variables_initializer())
  finally:
    gin.clear_config(clear_constants=True)
