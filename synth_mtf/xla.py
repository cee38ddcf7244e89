"""XLA, the compiler a TPU uses, on this CPU: compile a model's step, compare
it with TensorFlow's runtime, read its memory.

A TPU runs every step through XLA (TPUEstimator compiles the whole mtf graph).
Here the same mtf graph, lowered on a one-device placement mesh, is wrapped in
`xla.compile`, which compiles it for the CPU:

  step = xla.build(features, vocab)            # gin already parsed
  with tf.Session(graph=step.graph) as sess: ...

The graph holds what a TPU job runs: one training step (forward, mtf.gradients,
the gin-configured optimizer's update) and, with `eval_and_decode`, the eval
forward and greedy incremental decoding (mtf's while_loop), all on the same
variable values: the update waits for the eval and the decode, so the three read
the variables before the step changes them, under TF and under XLA alike.

`memory_report(dump_dir)` reads XLA's buffer assignment (written when
XLA_FLAGS="--xla_dump_to=DIR --xla_dump_hlo_as_text" is set before TensorFlow
starts): the bytes the compiled step needs, exact and the same every run.
"""

import glob
import os
import re

import numpy as np

FEATURES = ("inputs", "inputs_segmentation", "inputs_position", "targets",
            "targets_segmentation", "targets_position")


def packed_features(batch, length, vocab, seed=0, target_length=None,
                    packed=True):
  """T5's packed features {name: int32 [batch, length]}: row 0 holds two
  examples (one if not packed) and padding, every other row one example filling
  it. Token ids are in [2, vocab) (0 pads, 1 ends a sequence).
  Also "decode_inputs": each row's first example alone, zero-padded (what
  Bitransformer.decode reads)."""
  rng = np.random.RandomState(seed)
  out = {}
  for name, n in (("inputs", length), ("targets", target_length or length)):
    seg = np.ones((batch, n), np.int32)
    pos = np.tile(np.arange(n, dtype=np.int32), (batch, 1))
    cut, end = n // 2 - 1, n - 2  # row 0: [0, cut) | [cut, end) | padding
    seg[0, cut:end], seg[0, end:] = 2 if packed else 1, 0
    pos[0, cut:end] = np.arange(end - cut) + (0 if packed else cut)
    pos[0, end:] = 0
    ids = rng.randint(2, vocab, size=(batch, n)).astype(np.int32) * (seg > 0)
    out[name], out[name + "_segmentation"], out[name + "_position"] = (
        ids, seg, pos)
  out["decode_inputs"] = out["inputs"] * (out["inputs_segmentation"] == 1)
  return out


def tf_v1():
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  return tf


class Step(object):
  """A tf.Graph holding the step; `fetches` {name: tf.Tensor} runs it once."""

  def __init__(self, graph, fetches, variables, masters, lowering):
    self.graph = graph
    self.fetches = fetches
    self.variables = variables  # {name: tf.Variable}, masters and slices
    self.masters = masters  # the names of the masters (and global_step)
    with graph.as_default():
      self.to_slices = lowering.copy_masters_to_slices()
      self.to_masters = lowering.copy_slices_to_masters()
      self.init_ops = [tf_v1().global_variables_initializer(), self.to_slices]
      # one run sets many variables (a Variable.load each took seconds)
      self._setters = {}
      for name, v in variables.items():
        value = tf_v1().placeholder(v.dtype.base_dtype, v.shape)
        self._setters[name] = (value, tf_v1().assign(v, value))

  def values(self, sess):
    return sess.run({k: v for k, v in self.variables.items()})

  def load(self, sess, values):
    """Set the variables to values[name] (another graph's, to compare): the
    masters, then the slices (copied from the masters, or given)."""
    assert set(values) <= set(self.variables), sorted(
        set(values) - set(self.variables))
    self._set(sess, values, [n for n in values if n in self.masters])
    sess.run(self.to_slices)
    self._set(sess, values, [n for n in values if n not in self.masters])

  def _set(self, sess, values, names):
    if names:
      sess.run([self._setters[n][1] for n in names],
               {self._setters[n][0]: values[n] for n in names})


def build(features, vocab, compiled=True, eval_and_decode=False, seed=0,
          mesh_shape="", layout="", devices=None):
  """The Step of the gin-configured model (parse gin first) on features
  ({name: int32 array [batch, length]}, as packed_features makes them; only the
  ones it names are fed). compiled: XLA, else TF's runtime on the same graph.

  fetches: loss (the training step's), and with eval_and_decode: eval_loss,
  decodes (greedy, [batch, length] ids).
  mesh_shape, layout: a placement mesh of several processors (mtf's strings,
  e.g. "m:2" and "heads:m"), each placed on devices[i] (default: all on the
  one device, "").
  compiled="tpu": mesh-tensorflow's TPU lowering instead, SimdMeshImpl on one
  TPU core (a DeviceAssignment of a one-core Topology), inside tpu.rewrite;
  the graph builds on this CPU, running it needs a TPU (docs/reference.md)."""
  import mesh_tensorflow as mtf  # pylint: disable=g-import-not-at-top
  from mesh_tensorflow.transformer import transformer  # pylint: disable=g-import-not-at-top
  from mesh_tensorflow.transformer import utils as mtf_utils  # pylint: disable=g-import-not-at-top
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  from tensorflow.python.compiler.xla import xla as tf_xla  # pylint: disable=g-import-not-at-top
  from synth_mtf import model_graph  # pylint: disable=g-import-not-at-top

  wanted = FEATURES + (("decode_inputs",) if eval_and_decode else ())
  names = [k for k in wanted if k in features]
  kind = model_graph.model_type()
  if kind != "bitransformer":
    raise ValueError("synth_mtf.xla builds utils.run.model_type = "
                     "'bitransformer' (T5's encoder-decoder), got %r" % kind)
  graph = tf.Graph()
  keep = {}

  def computation(*tensors):
    mtf_graph = mtf.Graph()
    mesh = mtf.Mesh(mtf_graph, "mesh")
    batch = mtf.Dimension("batch", features["inputs"].shape[0])
    mf = {}
    for name, t in zip(names, tensors):
      shape = mtf.Shape([batch, mtf.Dimension("length", int(t.shape[1]))])
      mf[name] = mtf.import_fully_replicated(mesh, t, shape, name=name)
    model = mtf_utils.build_model(model_type=kind, input_vocab_size=vocab,
                                  output_vocab_size=vocab)
    vdt = mtf_utils.get_variable_dtype()

    def loss_of(mode):
      return model.call_simple(
          inputs=mf["inputs"], targets=mf["targets"], compute_loss=True,
          mode=mode, variable_dtype=vdt,
          encoder_sequence_id=mf.get("inputs_segmentation"),
          decoder_sequence_id=mf.get("targets_segmentation"),
          encoder_position=mf.get("inputs_position"),
          decoder_position=mf.get("targets_position"))[1]

    outputs = {}
    if eval_and_decode:
      outputs["eval_loss"] = loss_of(tf.estimator.ModeKeys.EVAL)
      outputs["decodes"] = model.decode(mf["decode_inputs"], vdt,
                                        temperature=0.0)
    outputs["loss"] = loss_of(tf.estimator.ModeKeys.TRAIN)
    variables = mtf_graph.trainable_variables
    grads = mtf.gradients([outputs["loss"]], [v.outputs[0] for v in variables])
    if eval_and_decode:  # the update after the reads of eval and decode
      after = [outputs["eval_loss"], outputs["decodes"]]
      grads = [mtf.depend(g, after) for g in grads]
    if not compiled:
      # TF's runtime in the CLI's v1 mode (ref variables) lets Adafactor's
      # in-place update of a variable run while a backward op still reads it
      # (for an earlier layer's gradient): two TF runs of one step differed in
      # the embedding's slot (1e-5, 15%). So this reference orders every update
      # after every gradient (a scalar of each: a split mesh's gradients are
      # lazy all-reduces). XLA's runs of the unordered step matched this.
      # Not in the compiled graph, whose buffers `synth-mtf fit` measures.
      done = mtf.depend(outputs["loss"], [mtf.reduce_sum(g) for g in grads])
      grads = [mtf.depend(g, [done]) for g in grads]
    updates = optimizer()(learning_rate=0.01).apply_grads(grads, variables)
    shape = mtf.convert_to_shape(mesh_shape)
    if compiled == "tpu":
      mesh_impl = mtf.simd_mesh_impl.SimdMeshImpl(
          shape, mtf.convert_to_layout_rules(layout), [""],
          one_core_assignment())
    else:
      mesh_impl = mtf.placement_mesh_impl.PlacementMeshImpl(
          shape, mtf.convert_to_layout_rules(layout),
          devices or [""] * max(1, shape.size))
    lowering = mtf.Lowering(mtf_graph, {mesh: mesh_impl})
    keep["lowering"] = lowering
    tf_out = [tf.cast(lowering.export_to_tf_tensor(outputs[k]), tf.float32)
              if k != "decodes" else lowering.export_to_tf_tensor(outputs[k])
              for k in sorted(outputs)]
    keep["names"] = sorted(outputs)
    return tf_out + [tf.group([lowering.lowered_operation(u)
                               for u in updates])]

  with graph.as_default():
    tf.set_random_seed(seed)
    tensors = [tf.constant(features[k], tf.int32, name=k) for k in names]
    if compiled == "tpu":
      from tensorflow.python.tpu import tpu  # pylint: disable=g-import-not-at-top
      out = tpu.rewrite(computation, inputs=tensors)
    elif compiled:
      out = tf_xla.compile(computation, inputs=tensors)
    else:
      out = computation(*tensors)
      with tf.control_dependencies([out[-1]]):
        out = [tf.identity(t) for t in out[:-1]]
    fetches = dict(zip(keep["names"], out))
    masters = {v.op.name for v in tf.global_variables()}
    # the slices the step trains (separate variables where the master dtype
    # differs, e.g. T5's bfloat16 masters), then the masters and global_step
    variables = {v.op.name: v for v in tf.global_variables()}
    for laid_out in keep["lowering"].variables.values():
      for v in laid_out.laid_out_tensor.all_slices:
        variables[v.op.name] = v
  return Step(graph, fetches, variables, masters, keep["lowering"])


def one_core_assignment():
  """A TPU DeviceAssignment of one core: a description (the Topology of a
  1x1x1 mesh), no device behind it."""
  from tensorflow.python.tpu import device_assignment  # pylint: disable=g-import-not-at-top
  from tensorflow.python.tpu import topology  # pylint: disable=g-import-not-at-top
  one = topology.Topology(mesh_shape=[1, 1, 1, 1],
                          device_coordinates=[[[0, 0, 0, 0]]])
  return device_assignment.DeviceAssignment(one, core_assignment=[[[0, 0, 0,
                                                                      0]]])


def optimizer():
  """The optimizer class the CLI trains with (utils.run.optimizer), Adafactor
  where gin binds none."""
  import gin  # pylint: disable=g-import-not-at-top
  import mesh_tensorflow as mtf  # pylint: disable=g-import-not-at-top
  try:
    bound = gin.query_parameter("utils.run.optimizer")
  except ValueError:
    bound = None
  if bound is None:
    return mtf.optimize.AdafactorOptimizer
  return bound.scoped_configurable_fn


def run(step, values=None, to_masters=False):
  """Initialise (or load values), run the step once: (fetched, variables
  before, variables after). to_masters: copy the slices the step trained to
  their masters first (a mesh of several processors has one slice each)."""
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  with tf.Session(graph=step.graph) as sess:
    for op in step.init_ops:
      sess.run(op)
    if values is not None:
      step.load(sess, values)
    before = step.values(sess)
    got = sess.run(step.fetches)
    if to_masters:
      sess.run(step.to_masters)
    after = step.values(sess)
  return got, before, after


# --- XLA's buffer assignment ------------------------------------------------

TOTAL_RE = re.compile(r"^Total bytes used: (\d+)", re.M)
ALLOCATION_RE = re.compile(
    r"^allocation (\d+): size (\d+), (.*?):?$", re.M)


def memory_report(dump_dir):
  """The largest compiled cluster's buffer assignment in dump_dir:
  {total, parameters, outputs, temporaries, file}. total: XLA's "Total bytes
  used"; parameters: the buffers of the entry computation's parameters (the
  variables and inputs it reads); outputs: the rest that outlive the step
  (maybe-live-out, results not aliased to a parameter); temporaries: the
  remainder, what the step allocates and frees."""
  files = glob.glob(os.path.join(dump_dir, "*buffer-assignment.txt"))
  if not files:
    raise RuntimeError("XLA wrote no buffer assignment in %s: was XLA_FLAGS set "
                       "before TensorFlow started?" % dump_dir)
  best = None
  for path in files:
    with open(path) as f:
      text = f.read()
    m = TOTAL_RE.search(text)
    if m and (best is None or int(m.group(1)) > best[0]):
      best = (int(m.group(1)), path, text)
  total, path, text = best
  parts = {"parameters": 0, "outputs": 0}
  for _, size, attrs in ALLOCATION_RE.findall(text):
    if "parameter" in attrs:
      parts["parameters"] += int(size)
    elif "maybe-live-out" in attrs:
      parts["outputs"] += int(size)
  return dict(total=total, temporaries=total - sum(parts.values()), file=path,
              **parts)


PEAK_RE = re.compile(r"^  Live ranges at \d+ \(peak\):\n((?:    .*\n)+)", re.M)
INSTRUCTION_RE = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = (\S+) (.*)$", re.M)
OP_NAME_RE = re.compile(r'op_name="([^"]*)"')


def peak_buffers(dump_dir, top=15):
  """The largest buffers live at the step's peak (from the buffer
  assignment's "Live ranges at N (peak)"), as [(bytes, instruction, shape,
  the TF op it came from)], largest first."""
  report = memory_report(dump_dir)
  with open(report["file"]) as f:
    m = PEAK_RE.search(f.read())
  if not m:
    return []
  sizes = {}
  for line in m.group(1).splitlines():
    name, _, size = line.strip().rpartition(": ")
    sizes[name] = int(size.split()[0])
  hlo = report["file"].replace("-buffer-assignment.txt", ".txt")
  where = {}
  if os.path.exists(hlo):
    with open(hlo) as f:
      for name, shape, rest in INSTRUCTION_RE.findall(f.read()):
        op = OP_NAME_RE.search(rest)
        where.setdefault(name, (shape, op.group(1) if op else ""))
  rows = [(b, n) + where.get(n, ("", "")) for n, b in sizes.items()]
  return sorted(rows, reverse=True)[:top]
