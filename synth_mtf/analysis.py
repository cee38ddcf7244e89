"""Look inside a Synthesizer: parameters (Table 1), attention maps (Figures 4-7),
weight histograms (Figures 2-3), mixture weights alpha, locality.

Works on any model_dir written by the stock t5_mesh_transformer (its checkpoints
and operative_config.gin) and on any gin config. Used by `synth-mtf`.
"""

import collections
import os
import re

import gin
import numpy as np

from synth_mtf import checkpoints
from synth_mtf import model_graph

LAYER_RE = re.compile(r"^(?P<stack>[^/]+)/block_(?P<block>\d+)/(?P<layer>layer_\d+)"
                      r"/SynthesizerAttention/(?P<rest>.+)$")
GLOBAL = {"random": ["R"], "fixed_random": ["R"],
          "factorized_random": ["R1", "R2"]}


class AnalysisError(ValueError):
  """A model dir, checkpoint, layer or head that the command cannot use."""


# ---- checkpoints -----------------------------------------------------------

def checkpoint_path(model_dir, step=None):
  """The checkpoint at `step` (default: the latest), once read and found
  finite: a diverged or corrupt checkpoint is refused, never analysed."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not tf.io.gfile.isdir(model_dir):
    raise AnalysisError("model dir %r does not exist." % model_dir)
  have = checkpoints.steps(model_dir)
  if step is None and have:
    step = have[-1]
  elif step not in have:
    raise AnalysisError(
        "no checkpoint%s in %r (checkpoints there: %s). Train with "
        "t5_mesh_transformer --model_dir=%s first, or pick an existing step."
        % ("" if step is None else " for step %d" % step, model_dir,
           have or "none", model_dir))
  path = checkpoints.path(model_dir, step)
  _READ.clear()
  _READ[path] = checkpoints.read_finite(model_dir, step)
  return path


_READ = {}  # the checkpoint checkpoint_path read last, for read_variables


def read_variables(path):
  variables = _READ.get(path)
  if variables is None:
    model_dir, step = os.path.dirname(path), int(path.rsplit("-", 1)[1])
    variables = checkpoints.read(model_dir, step)
  return {n: v for n, v in variables.items() if "_slot_" not in n}


def synthesizer_layers(variables, model_dir="the checkpoint"):
  """{(stack, block): {relative name: array}} of the SynthesizerAttention layers."""
  layers = collections.defaultdict(dict)
  for name, value in variables.items():
    m = LAYER_RE.match(name)
    if m:
      layers[(m.group("stack"), int(m.group("block")))][m.group("rest")] = value
  if not layers:
    kinds = sorted({n.split("/")[3] for n in variables if n.count("/") >= 3
                    and "/block_" in n})
    raise AnalysisError(
        "%s has no SynthesizerAttention variables: it was written by a model "
        "without synthesizers (its attention layers: %s)." % (model_dir, kinds))
  return dict(layers)


def softmax(z, axis=-1):
  z = z - z.max(axis=axis, keepdims=True)
  e = np.exp(z)
  return e / e.sum(axis=axis, keepdims=True)


def global_attention(layer_vars, length, causal):
  """softmax of the Random / Factorized Random table: {function: [h, L, L]}."""
  out = {}
  for kind, names in GLOBAL.items():
    if not all("%s/%s" % (kind, n) in layer_vars for n in names):
      continue
    if kind == "factorized_random":
      r = np.einsum("hik,hjk->hij", layer_vars[kind + "/R1"],
                    layer_vars[kind + "/R2"])
    else:
      r = layer_vars[kind + "/R"]
    r = r[:, :length, :length].astype(np.float64)
    if causal:
      r = np.where(np.tril(np.ones((length, length), bool)), r, -1e9)
    out[kind] = softmax(r)
  return out


def alpha_table(layer_vars):
  """softmax(alpha) [heads, functions] or None for a single function."""
  if "alpha" not in layer_vars:
    return None
  return softmax(layer_vars["alpha"].astype(np.float64))


def functions_of(layer_vars):
  """Synthesizing functions of a layer, in the order alpha uses (gin order)."""
  names = {r.split("/")[0] for r in layer_vars if "/" in r}
  return sorted(names)


# ---- attention on a text (any variant, Dense included) -----------------------

def attention_on_text(model_dir, text, step=None):
  """Run the model of model_dir on `text` (as inputs and as targets) and return
  {(stack, block): [heads, L, L]} attention weights of each SynthesizerAttention
  layer (the full mixed softmax, masks included)."""
  import mesh_tensorflow as mtf  # pylint: disable=g-import-not-at-top
  import seqio  # pylint: disable=g-import-not-at-top
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  from synth_mtf import attention  # pylint: disable=g-import-not-at-top

  path = checkpoint_path(model_dir, step)
  config = os.path.join(model_dir, "operative_config.gin")
  if not os.path.exists(config):
    raise AnalysisError("%s has no operative_config.gin, which the stock CLI "
                        "writes; cannot rebuild the model." % model_dir)
  model_graph.parse([], [])
  gin.parse_config_file(config, skip_unknown=True)
  task = gin.query_parameter("mesh_train_dataset_fn.mixture_or_task_name")
  if not isinstance(task, str):  # a macro, as T5's dataset.gin binds it
    task = gin.query_parameter("%MIXTURE_NAME")
  vocab = seqio.get_mixture_or_task(task).output_features["targets"].vocabulary
  ids = list(vocab.encode(text)) + [1]
  reader = tf.train.load_checkpoint(path)
  saved = reader.get_variable_to_shape_map()
  master = reader.get_variable_to_dtype_map()  # T5 keeps bfloat16 masters
  emb = [s for n, s in saved.items() if n.endswith("embedding")
         and "_slot_" not in n]
  vocab_size = emb[0][0]
  graph = tf.Graph()
  with graph.as_default():
    mtf_graph = mtf.Graph()
    mesh = mtf.Mesh(mtf_graph, "mesh")
    batch = mtf.Dimension("batch", 1)
    length = mtf.Dimension("length", len(ids))
    tokens = mtf.import_tf_tensor(mesh, tf.constant([ids], tf.int32),
                                  mtf.Shape([batch, length]))
    dtypes = {master[n] for n in saved if "_slot_" not in n and
              n != "global_step"}
    vdt = mtf.VariableDType(dtypes.pop() if len(dtypes) == 1 else tf.float32,
                            tf.float32, tf.float32)
    attention.RECORDER = []
    try:
      model_graph.call_model(tokens, vocab_size, tf.estimator.ModeKeys.EVAL,
                             vdt, compute_loss=False)
      recorded = attention.RECORDER
    finally:
      attention.RECORDER = None
    if not recorded:
      raise AnalysisError("%s builds no SynthesizerAttention layer: its model "
                          "has no synthesizers." % model_dir)
    names, tensors = [], []
    for scope, w in recorded:
      heads = w.shape.get_dim_by_name("heads")
      mem = w.shape.get_dim_by_name("memory_length")
      full = mtf.Shape([batch, heads, length, mem])
      names.append(scope)
      tensors.append(mtf.transpose(mtf.broadcast(w, full), full))
    lowering = mtf.Lowering(mtf_graph, {mesh: mtf.placement_mesh_impl.
                                        PlacementMeshImpl([], [], [""])})
    outs = [lowering.export_to_tf_tensor(t) for t in tensors]
    restore = tf.train.Saver(
        {v.op.name: v for v in tf.global_variables() if v.op.name in saved})
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      restore.restore(sess, path)
      sess.run(lowering.copy_masters_to_slices())
      values = sess.run(outs)
  out = {}
  for scope, value in zip(names, values):
    m = re.match(r"^([^/]+)/block_(\d+)/", scope)
    out[(m.group(1), int(m.group(2)))] = value[0]
  return out, ids


# ---- statistics ------------------------------------------------------------

def locality(att, window):
  """Mean attention mass within +-window of the diagonal, per head: [h]."""
  h, n, m = att.shape
  i, j = np.meshgrid(np.arange(n), np.arange(m), indexing="ij")
  near = np.abs(i - j) <= window
  return (att * near[None]).sum(-1).mean(-1)


def select(maps, layer=None, head=None):
  """Filter {(stack, block): [h, L, L]} by 'stack/block' and head index."""
  if layer is not None:
    stack, _, block = layer.partition("/")
    key = (stack, int(block)) if block.isdigit() else None
    if key not in maps:
      raise AnalysisError("no synthesizer layer %r; layers: %s" % (
          layer, ["%s/%d" % k for k in sorted(maps)]))
    maps = {key: maps[key]}
  if head is not None:
    heads = next(iter(maps.values())).shape[0]
    if not 0 <= head < heads:
      raise AnalysisError("no head %d: the layers have heads 0..%d" %
                          (head, heads - 1))
    maps = {k: v[head:head + 1] for k, v in maps.items()}
  return maps


# ---- parameters (Table 1) --------------------------------------------------

# The layer's parameters besides its synthesizing functions' (each function
# has its Table 1 row in formula() and num_params()): formula, its value.
LAYER_TERMS = {
    "G (values)": ("d*h*d_kv", lambda d, h, d_kv, functions: d * h * d_kv),
    "output": ("h*d_kv*d", lambda d, h, d_kv, functions: h * d_kv * d),
    "alpha": ("h*n_functions", lambda d, h, d_kv, functions: h * functions),
}


def parameter_table(gin_files, bindings=()):
  """Rows (component, formula, per layer, layers, total) of a config's model."""
  from synth_mtf.attention import SynthesizerAttention  # pylint: disable=g-import-not-at-top
  variables = model_graph.build_variables(gin_files, bindings)
  d_model = gin.query_parameter("%d_model")
  groups = collections.OrderedDict()
  for name, (shape, _) in sorted(variables.items()):
    parts = name.split("/")
    if len(parts) > 3 and parts[1].startswith("block_"):
      comp = parts[3]
      if comp == "SynthesizerAttention":
        sub = parts[4] if len(parts) > 5 else {"v": "G (values)", "o": "output",
                                               "alpha": "alpha"}[parts[4]]
        comp = "SynthesizerAttention: %s" % sub
      key = (parts[0], comp)
      layer = "/".join(parts[:3])
    else:
      key, layer = (parts[0], "/".join(parts[1:])), name
    g = groups.setdefault(key, {"layers": set(), "count": 0})
    g["layers"].add(layer)
    g["count"] += int(np.prod(shape))
  layer = SynthesizerAttention()
  formulas = {s.name: s for s in layer.synthesizers}
  if not any(k[1].startswith("SynthesizerAttention") for k in groups):
    formulas = {}
  h, dkv, n = layer.num_heads, layer.key_value_size, layer.max_length
  rows = []
  for (stack, comp), g in groups.items():
    formula, value = "", None
    if comp.startswith("SynthesizerAttention: "):
      sub = comp.split(": ", 1)[1]
      consts = {}
      if sub in formulas:  # Table 1's row of a synthesizing function
        formula = formulas[sub].formula()
        consts = formulas[sub].constants(n)
        value = formulas[sub].num_params(d_model, h, dkv, n)
      elif sub in LAYER_TERMS:
        formula, count = LAYER_TERMS[sub]
        value = count(d_model, h, dkv, len(formulas))
      if consts:
        formula += " (%s)" % ", ".join("%s=%d" % kv for kv in sorted(
            consts.items()))
    n_layers = len(g["layers"])
    rows.append({"stack": stack, "component": comp, "formula": formula,
                 "formula_value": value,
                 "per_layer": g["count"] // max(1, n_layers),
                 "layers": n_layers, "total": g["count"]})
  meta = {"d_model": d_model, "heads": h, "d_kv": dkv, "max_length": n,
          "synthesizers": [repr(s) for s in layer.synthesizers],
          "total": sum(r["total"] for r in rows)}
  return rows, meta


# ---- pictures ----------------------------------------------------------------

CELL = 1.6  # inches per heatmap cell; tests read the grid back from the size
DPI = 60


def _plt():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def heatmap_grid(maps, path, title):
  """One row per layer, one column per head; returns (rows, cols)."""
  plt = _plt()
  keys = sorted(maps)
  rows, cols = len(keys), max(v.shape[0] for v in maps.values())
  fig, axes = plt.subplots(rows, cols, figsize=(CELL * cols, CELL * rows),
                           dpi=DPI, squeeze=False)
  for r, key in enumerate(keys):
    for c in range(cols):
      ax = axes[r][c]
      ax.set_xticks([])
      ax.set_yticks([])
      if c < maps[key].shape[0]:
        ax.imshow(maps[key][c], cmap="viridis", interpolation="nearest")
      if c == 0:
        ax.set_ylabel("%s %d" % key, fontsize=7)
      if r == 0:
        ax.set_title("head %d" % c, fontsize=7)
  fig.suptitle(title, fontsize=8)
  fig.savefig(path, dpi=DPI)
  plt.close(fig)
  return rows, cols


def histograms(series, path, title, bins=50):
  """series: {label: {(stack, block): weights}}; one panel per layer."""
  plt = _plt()
  layers = sorted({k for s in series.values() for k in s})
  fig, axes = plt.subplots(1, len(layers), figsize=(3 * len(layers), 2.6),
                           dpi=80, squeeze=False)
  for ax, key in zip(axes[0], layers):
    for label, s in series.items():
      if key in s:
        ax.hist(np.ravel(s[key]), bins=bins, alpha=0.55, label=label,
                log=True)
    ax.set_title("%s layer %d" % key, fontsize=8)
    ax.tick_params(labelsize=6)
  axes[0][0].legend(fontsize=6)
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def alpha_heatmap(alphas, functions, path, title):
  plt = _plt()
  keys = sorted(alphas)
  fig, axes = plt.subplots(1, len(keys), figsize=(2.2 * len(keys), 2.4),
                           dpi=80, squeeze=False)
  for ax, key in zip(axes[0], keys):
    im = ax.imshow(alphas[key], vmin=0, vmax=1, cmap="magma")
    ax.set_title("%s %d" % key, fontsize=7)
    ax.set_xticks(range(len(functions[key])))
    ax.set_xticklabels(functions[key], rotation=60, fontsize=6)
    ax.set_ylabel("head", fontsize=6)
  fig.colorbar(im, ax=list(axes[0]))
  fig.suptitle(title, fontsize=9)
  fig.savefig(path)
  plt.close(fig)


def component_names(model_dir):
  """The model's synthesizing functions in alpha's order (its gin config)."""
  from synth_mtf import synthesizers as synth_lib  # pylint: disable=g-import-not-at-top
  config = os.path.join(model_dir, "operative_config.gin")
  if not os.path.exists(config):
    return None
  with open(config) as f:
    # operative configs write it scoped, e.g. "encoder/SynthesizerAttention..."
    m = re.search(r"^(?:\w+/)?(?:[\w.]+\.)?SynthesizerAttention\.synthesizers"
                  r" = (\[[^\]]*\])", f.read(), flags=re.M)
  if not m:
    return [synth_lib.build("random").name]  # the layer's default
  import ast  # pylint: disable=g-import-not-at-top
  return [synth_lib.build(s).name for s in ast.literal_eval(m.group(1))]


def attention_maps(model_dir, step=None, text=None, length=None):
  """{(stack, block): [heads, L, L]} and how they were made.

  Pure Random / Fixed / Factorized Random layers: softmax of the table read from
  the checkpoint (causal in the decoder), no input needed. Otherwise (Dense,
  Factorized Dense, mixtures) the weights depend on the input: the model runs
  on `text`.
  """
  path = checkpoint_path(model_dir, step)
  layers = synthesizer_layers(read_variables(path), model_dir)
  pure_global = all(set(functions_of(v)) <= set(GLOBAL) and "alpha" not in v
                    for v in layers.values())
  if pure_global and text is None:
    maps = {}
    for key, v in layers.items():
      n = length or next(a for r, a in v.items() if r.endswith("R") or
                         r.endswith("R1")).shape[1]
      (att,) = global_attention(v, n, causal=key[0] != "encoder").values()
      maps[key] = att
    return maps, "softmax of the synthesizer tables in %s" % os.path.basename(
        path)
  if text is None:
    raise AnalysisError(
        "%s has input-dependent synthesizers (%s): pass --text to compute the "
        "attention weights on an input." % (model_dir, sorted(
            {f for v in layers.values() for f in functions_of(v)})))
  maps, _ = attention_on_text(model_dir, text, step)
  return maps, "weights on %r, %s" % (text, os.path.basename(path))
