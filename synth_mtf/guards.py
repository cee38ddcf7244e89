"""The layer's build-time guards: checks that stop a run with the problem and
its fix where mesh-tensorflow would fail late or go on without a word.

- check_heads_layout: a layout that splits `heads` over a mesh dimension that
  does not divide num_heads (mtf says only "not divisible", while lowering);
- check_against_checkpoint: a --model_dir whose checkpoint another variant
  (or another max_length) wrote (the Saver would fail deep inside, or mix
  weights);
- check_init_checkpoint: a utils.run.init_checkpoint that leaves some of the
  layer's variables at their initializers (mtf logs that at INFO only).

SynthesizerAttention.call() runs them while the graph is built; attention.py
keeps the math.
"""

import functools
import re
import sys

import gin
import mesh_tensorflow as mtf
import tensorflow.compat.v1 as tf


def check_heads_layout(num_heads, layout_rules=None, mesh_shape=None):
  """A clear error when the layout splits `heads` over a mesh dimension that
  does not divide num_heads (mtf only says "not divisible" while lowering)."""
  def query(name):
    try:
      return gin.query_parameter(name)
    except ValueError:
      return None
  layout_rules = layout_rules or query("utils.run.layout_rules")
  mesh_shape = mesh_shape or query("utils.run.mesh_shape")
  if not isinstance(layout_rules, str) or not isinstance(mesh_shape, str):
    return  # e.g. a TPU topology: mtf checks it when lowering
  shape = mtf.convert_to_shape(mesh_shape)
  axis = mtf.convert_to_layout_rules(layout_rules).tensor_dimension_to_mesh_axis(
      mtf.Dimension("heads", num_heads), shape)
  if axis is None:
    return
  mesh_dim = shape.dims[axis]
  if num_heads % mesh_dim.size:
    raise ValueError(
        "num_heads=%d is split over mesh dimension %r of size %d "
        "(utils.run.layout_rules has 'heads:%s'), which does not divide it. "
        "Use a num_heads divisible by %d, or remove 'heads:%s' from "
        "utils.run.layout_rules." % (num_heads, mesh_dim.name, mesh_dim.size,
                                     mesh_dim.name, mesh_dim.size,
                                     mesh_dim.name))


def cli_model_dir():
  """--model_dir of the stock CLI, if this process is one (else None)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  fl = flags.FLAGS
  if "model_dir" in fl and fl.is_parsed():
    return fl.model_dir
  return None


@functools.lru_cache(maxsize=4)
def checkpoint_shapes(path):
  return tf.train.load_checkpoint(path).get_variable_to_shape_map()


def check_against_checkpoint(graph, scope, model_dir=None):
  """Fail loudly if model_dir's checkpoint was written by another variant.

  Restoring a Random checkpoint into a Dense config (or one with another
  max_length) would otherwise fail deep inside the Saver, or, for a layer whose
  variables happen to be absent, look like a fresh start. We compare this
  layer's variables (names and shapes) with the checkpoint's at build time.
  """
  model_dir = model_dir or cli_model_dir()
  ckpt = tf.train.latest_checkpoint(model_dir) if model_dir else None
  if not ckpt:
    return
  prefix = scope + "/"
  built = {v.name[len(prefix):]: v.shape.to_integer_list
           for v in graph.all_variables if v.name.startswith(prefix)}
  saved = {n[len(prefix):]: s for n, s in checkpoint_shapes(ckpt).items()
           if n.startswith(prefix) and "_slot_" not in n}
  if built == saved:
    return
  layer = scope.rsplit("/", 1)[0] + "/"
  there = sorted({n[len(layer):] for n in checkpoint_shapes(ckpt)
                  if n.startswith(layer) and "_slot_" not in n})
  shapes = ["%s: %s here, %s in the checkpoint" % (n, built[n], saved[n])
            for n in sorted(set(built) & set(saved)) if built[n] != saved[n]]
  raise ValueError(
      "--model_dir %s holds a checkpoint (%s) written by a different model: "
      "under %s it has %s, but this config builds %s.%s Restoring would fail "
      "or mix weights. Use a new --model_dir, or the gin config that wrote the "
      "checkpoint (its operative_config.gin is in the model_dir)." % (
          model_dir, ckpt.rsplit("/", 1)[-1], layer,
          there or "no variables", {k: built[k] for k in sorted(built)},
          " Shapes differ: %s (another max_length, num_heads or d_kv?)."
          % "; ".join(shapes) if shapes else ""))


# The function of mesh-tensorflow whose locals hold the run's init_checkpoint:
# the model_fn that utils.tpu_estimator_model_fn returns to the estimator
# (mesh_tensorflow/transformer/utils.py; tests/test_errors.py pins it).
MTF_MODEL_FN = ("mesh_tensorflow.transformer.utils", "my_model_fn")


def estimator_model_fn_locals():
  """The local variables of mesh-tensorflow's estimator model_fn
  (MTF_MODEL_FN) if this layer is being built inside it, else {}. They hold
  the run's init_checkpoint and model_dir, whichever way they were given
  (gin, the CLI, MtfModel.finetune).

  Built inside an estimator by a function of mtf's utils that is not
  MTF_MODEL_FN (mesh-tensorflow renamed it), it raises: the guard would
  otherwise switch itself off without a word."""
  module, name = MTF_MODEL_FN
  inside_mtf_utils = None  # the innermost function of mtf's utils on the way
  frame = sys._getframe(1)  # pylint: disable=protected-access
  while frame is not None:
    frame_module = frame.f_globals.get("__name__", "")
    if frame_module == module:
      if frame.f_code.co_name == name:
        return frame.f_locals
      inside_mtf_utils = inside_mtf_utils or frame.f_code.co_name
    elif frame_module.startswith("tensorflow_estimator.") and inside_mtf_utils:
      raise RuntimeError(
          "SynthesizerAttention is being built by mesh-tensorflow's estimator "
          "(in %s.%s, called by %s), but not inside %s.%s, whose local "
          "variables hold the run's init_checkpoint: this mesh-tensorflow "
          "renamed or moved it, and synth_mtf cannot check that "
          "init_checkpoint restores the layer. Point "
          "synth_mtf.guards.MTF_MODEL_FN at the model_fn that "
          "utils.tpu_estimator_model_fn returns in this version, or use the "
          "mesh-tensorflow of requirements/lock.txt." % (
              module, inside_mtf_utils, frame_module, module, name))
    frame = frame.f_back
  return {}


WARM_START_GIN = "warm_start/from_t5.gin"


def check_init_checkpoint(graph, scope, fresh_variables):
  """Stop when utils.run.init_checkpoint would leave variables of this layer
  at their initializers.

  mesh-tensorflow restores only the variables whose (mapped) names the
  checkpoint has and logs the others at INFO: a stock T5 checkpoint restores
  none of a Synthesizer's attention, and the run would train fresh attention
  on a pretrained model without a word.
  """
  run = estimator_model_fn_locals()
  init_checkpoint = run.get("init_checkpoint")
  if not init_checkpoint or run.get("mode") != tf.estimator.ModeKeys.TRAIN:
    return
  model_dir = run.get("model_dir")
  if model_dir and tf.train.latest_checkpoint(model_dir):
    return  # a resumed run restores its own checkpoint, not init_checkpoint
  from mesh_tensorflow.transformer import utils as mtf_utils  # pylint: disable=g-import-not-at-top
  saved = checkpoint_shapes(init_checkpoint)
  pattern = run.get("init_variable_filter")
  prefix = scope + "/"
  missing, differ = [], []
  for v in graph.all_variables:
    if not v.name.startswith(prefix):
      continue
    name = v.name[len(prefix):]
    source = mtf_utils.init_checkpoint_variable_mapping(v.name)
    restored = (source in saved and mtf_utils.should_load_variable(v.name) and
                (not pattern or re.search(pattern, source)))
    if not restored:
      if not (fresh_variables and re.search(fresh_variables, name)):
        missing.append(name)
    elif list(saved[source]) != v.shape.to_integer_list:
      differ.append("%s: %s here, %s in the checkpoint as %s" % (
          name, v.shape.to_integer_list, saved[source], source))
  if not missing and not differ:
    return
  raise ValueError(
      "utils.run.init_checkpoint=%s does not provide every variable of %s "
      "(names as mapped by init_checkpoint_variable_mapping): %s%s. "
      "mesh-tensorflow would start %s fresh without a word. Fixes: warm "
      "starting from a stock T5 checkpoint (SelfAttention), add "
      "--gin_file=%s, which maps T5's q, k, v, o and relative bias onto this "
      "layer; or accept fresh variables explicitly with "
      "--gin_param=\"SynthesizerAttention.fresh_variables = '%s'\" (a regex "
      "over the names above; '.*' for all).%s" % (
          init_checkpoint, scope,
          "absent: %s" % missing if missing else "",
          "%sshapes differ: %s" % ("; " if missing else "", "; ".join(differ))
          if differ else "",
          "them" if not differ else "or fail to restore them",
          WARM_START_GIN, "|".join(re.escape(m) for m in missing) or ".*",
          " Different shapes cannot be restored: build the model with the "
          "checkpoint's sizes (max_length, num_heads, d_kv)." if differ
          else ""))
