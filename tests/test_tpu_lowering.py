"""TPU's own lowering (mtf's SimdMeshImpl) of our layer, tried on this CPU.

No TPU here, and no TPU op is faked. What TF 2.12 allows without one: a
DeviceAssignment built from a stand-in Topology (numpy arrays: one task, two
cores) and tf.tpu.replicate, whose TPUReplicateContext gives mtf's
ReplicatedVariable its variable handles. Inside it SimdMeshImpl lowers the
layer (the graph is built, TPU collectives and per-core slice variables
included), so we assert what the lowering says about our layer: the slice
each core holds and the collectives the heads split costs. Nothing runs: the
TPU rewrite pass that consumes the cluster comes with a TPU runtime, and the
CPU build has no kernel for TPUReplicateMetadata.

The failure points are TF's/mtf's, pinned here (and shown to be the same for
mtf's own SelfAttention), so that an upgrade which moves them gets noticed.
"""

import re

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


def simd_lower(mtf_graph, mesh, outputs, layout, device_assignment):
  mesh_impl = mtf.simd_mesh_impl.SimdMeshImpl(
      mtf.convert_to_shape("model:%d" % CORES),
      mtf.convert_to_layout_rules(layout), None, device_assignment)
  # autostack=False: one slice variable per mtf variable (stacking same-shape
  # variables is an optimization of its own, not the layout's)
  lowering = mtf.Lowering(mtf_graph, {mesh: mesh_impl}, autostack=False)
  return [lowering.export_to_tf_tensor(t) for t in outputs]


def layer_step(layer_fn, layout, device_assignment):
  """A computation for tf.tpu.replicate / xla.compile: the layer's eval
  forward, lowered by SimdMeshImpl; -> sum of its output."""

  def computation():
    mtf_graph = mtf.Graph()
    mesh = mtf.Mesh(mtf_graph, "mesh")
    y = harness.call_layer(layer_fn(), mesh, x_input())
    # a replicated scalar: SimdMeshImpl exports only fully replicated tensors
    return simd_lower(mtf_graph, mesh, [mtf.reduce_sum(y)], layout,
                      device_assignment)[0]

  return computation


def replicate(computation, device_assignment):
  return tpu.replicate(computation, inputs=[[]] * CORES,
                       device_assignment=device_assignment)


def slice_variables(graph, mtf_names):
  """{mtf variable name: [(per-core slice shape, device)]}: the slice
  variables SimdMeshImpl made for each, in core order."""
  tpu_vars = graph.get_collection("TPU_VAR")
  out = {}
  for name in mtf_names:
    out[name] = []
    for core in range(CORES):
      hits = [v for v in tpu_vars
              if v.name.endswith("%s_slice_%d:0" % (name, core))]
      assert len(hits) == 1, (name, core, [v.name for v in tpu_vars])
      out[name].append((hits[0].shape.as_list(), hits[0].device))
  return out


def named_split(shape, layout):
  """The per-core shape a layout gives, from the dimension names alone."""
  split = dict(r.split(":") for r in layout.split(";") if r)
  return [d.size // CORES if d.name in split else d.size for d in shape.dims]


def core_devices():
  return ["/task:0/device:TPU:%d" % core for core in range(CORES)]


def build(layer_fn, layout):
  graph = tf.Graph()
  with graph.as_default():
    tf.set_random_seed(1)
    outs = replicate(layer_step(layer_fn, layout, stand_in_device_assignment()),
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
    assert slices[var_name] == [(per_core, d) for d in core_devices()]
  assert all_reduce_groups(graph) == [[list(range(CORES))]]

  graph, _ = build(LAYERS[name], "")
  slices = slice_variables(graph, variables)
  for var_name, shape in variables.items():
    assert slices[var_name] == [(shape.to_integer_list, d)
                                for d in core_devices()]
  assert all_reduce_groups(graph) == []
