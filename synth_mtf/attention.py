"""Synthetic attention layer: Y = softmax(sum_i alpha_i S_i(X) + mask) . G(X).

One layer composes any list of synthesizing functions (synthesizers.py). With one
function alpha is 1; with several, alpha is a learned [heads, n] table normalized
by a softmax over the functions (sum alpha = 1, the paper's "Mixture of
Synthesizers"), per layer and per head.

It subclasses mtf's SelfAttention only to inherit its masks (`compute_bias`:
causal read/write priorities and segment ids) and the gin bindings T5 already makes
on `SelfAttention` (num_heads=%num_heads, key_value_size=%d_kv, dropout_rate),
which reach us because we pass them through to SelfAttention.__init__.
"""

import math

import gin
import mesh_tensorflow as mtf
from mesh_tensorflow.transformer import transformer_layers
import tensorflow.compat.v1 as tf

from synth_mtf import guards
from synth_mtf import synthesizers as synth_lib

COMPONENTS_DIM = "synth_components"

# When a list (set by synth_mtf.analysis while it builds a graph), each layer
# appends (variable scope, attention weights) to it. None in normal runs.
RECORDER = None


@gin.configurable
class SynthesizerAttention(transformer_layers.SelfAttention):
  """Synthesizer self-attention (Tay et al. 2021) for mtf.transformer stacks.

  Works as encoder self-attention, causal decoder self-attention (incremental
  decoding included) and in decoder-only LMs. Cross-attention stays
  EncDecAttention: Dense/Random synthesizers need queries and memory of the same
  length, which cross-attention does not have (paper, section 4).
  """

  def __init__(self,
               synthesizers=("random",),
               max_length=512,
               num_heads=None,
               key_value_size=None,
               dropout_rate=None,
               relative_attention_type=None,
               relative_attention_num_buckets=None,
               alpha_init=None,
               fresh_variables=None):
    """Create the layer.

    Args:
      synthesizers: list of names ("random", "fixed_random", "factorized_random",
        "dense", "factorized_dense", "vanilla"; paper aliases "r", "fix",
        "fr", "d", "fd", "v"; "dot_product", the name of vanilla's class and
        checkpoint scope) or synthesizers.SynthesizingFunction instances.
        Several entries make a mixture with learned per-head alpha.
      max_length: size of the length-dependent parameters (Random's N x N, Dense's
        N outputs). Sequences up to this length run; longer ones fail at graph
        construction. Changing it changes the checkpoint's variable shapes.
      num_heads, key_value_size, dropout_rate: None (the default) takes
        SelfAttention's gin bindings, i.e. T5's %num_heads, %d_kv and
        %dropout_rate; a value here overrides them for this layer only.
      relative_attention_type: T5's relative position bias, added to the mixed
        logits. Default None: a pure synthesizer sees no query-key position bias
        (as in the paper and the mtf release); set "bias_shared" to give mixtures
        with dot product the same bias as T5's vanilla attention.
      relative_attention_num_buckets: as in SelfAttention.
      alpha_init: a mixture's initial alpha, {synthesizer name: weight}, e.g.
        {'vanilla': 0.999}; the components not named share what is left
        equally. None: uniform. A warm start from a T5 checkpoint uses it to
        begin close to the pretrained dot-product attention.
      fresh_variables: with utils.run.init_checkpoint, a regex over this
        layer's variable names (e.g. 'random/R', 'alpha') that may start fresh
        because the checkpoint lacks them. Any other variable the checkpoint
        does not provide stops the run at graph construction; '.*' accepts
        all.
    """
    # Only pass what is set, so that gin's SelfAttention bindings fill the rest;
    # an explicit signature (no **kwargs) lets gin reject misspelled bindings.
    if relative_attention_type == "contextual":
      raise ValueError(
          "SynthesizerAttention.relative_attention_type='contextual' is not "
          "supported: it is computed from the queries, which a synthesizer "
          "does not have. Use 'bias_shared' (T5's, shared by the layers) or "
          "'bias', or None.")
    overrides = dict(num_heads=num_heads, key_value_size=key_value_size,
                     dropout_rate=dropout_rate,
                     relative_attention_num_buckets=relative_attention_num_buckets)
    super(SynthesizerAttention, self).__init__(
        relative_attention_type=relative_attention_type,
        **{k: v for k, v in overrides.items() if v is not None})
    if isinstance(synthesizers, (str, synth_lib.SynthesizingFunction)):
      synthesizers = [synthesizers]
    if not synthesizers:
      raise ValueError(
          "SynthesizerAttention.synthesizers is empty: a mixture needs at least "
          "one synthesizing function, e.g. ['random'] or ['random', "
          "'vanilla']. Valid names: %s." % sorted(synth_lib.REGISTRY))
    self.synthesizers = [synth_lib.build(s) for s in synthesizers]
    names = [s.name for s in self.synthesizers]
    if len(set(names)) != len(names):
      raise ValueError(
          "SynthesizerAttention.synthesizers lists %s: each synthesizing function "
          "may appear once per layer (their variables share a scope)." % names)
    if not isinstance(max_length, int) or max_length < 1:
      raise ValueError("SynthesizerAttention.max_length must be a positive "
                       "integer, got %r." % (max_length,))
    self.max_length = max_length
    for s in self.synthesizers:
      s.validate(max_length)
    self.alpha_init = _alpha_logits(alpha_init, names)
    self.fresh_variables = fresh_variables
    if self.num_memory_heads:
      raise ValueError("SynthesizerAttention does not support num_memory_heads "
                       "(multi-query attention); unset it for this layer.")
    if self.shared_kv or self.keep_query_heads_dims:
      raise ValueError("SynthesizerAttention does not support shared_kv or "
                       "keep_query_heads_dims; unset them for this layer.")

  @property
  def heads_dim(self):
    return mtf.Dimension("heads", self.num_heads)

  @property
  def length_dependent(self):
    return any(not isinstance(s, synth_lib.DotProduct)
               for s in self.synthesizers)

  def num_params(self, d_model):
    """Parameters of one layer: Table 1's |theta| per function + G, output, alpha."""
    h, dkv, n = self.num_heads, self.key_value_size, self.max_length
    total = 2 * d_model * h * dkv  # value (G) and output projections
    total += sum(s.num_params(d_model, h, dkv, n) for s in self.synthesizers)
    if len(self.synthesizers) > 1:
      total += h * len(self.synthesizers)
    return total

  def _check_length(self, context, memory_length):
    if not self.length_dependent:
      return
    lengths = [memory_length.size]
    if context.mode != "incremental":
      lengths.append(context.length_dim.size)
    if max(lengths) <= self.max_length:
      return
    if context.mode in ("incremental", "first_part"):
      # A trained model's max_length is fixed by its checkpoint: the fix that
      # works when decoding is a shorter decode, so it comes first.
      raise ValueError(
          "Decode length %d (Bitransformer.decode.max_decode_length, or the "
          "targets length) exceeds SynthesizerAttention.max_length=%d, the "
          "size of the trained %s parameters. Bind "
          "--gin_param=\"Bitransformer.decode.max_decode_length = %d\" (or "
          "less). Raising max_length instead changes the parameters' shapes: "
          "it needs a model trained with it." % (
              memory_length.size, self.max_length,
              "/".join(s.name for s in self.synthesizers
                       if not isinstance(s, synth_lib.DotProduct)),
              self.max_length))
    what = "Sequence length %d" % max(lengths)
    raise ValueError(
        "%s exceeds SynthesizerAttention.max_length=%d (the size of the %s "
        "parameters). Bind --gin_param=\"SynthesizerAttention.max_length = %d\" "
        "(or more), or shorten the sequence." % (
            what, self.max_length,
            "/".join(s.name for s in self.synthesizers
                     if not isinstance(s, synth_lib.DotProduct)),
            max(lengths)))

  def _segment_positions(self, context, memory_length):
    """Per-segment positions (queries, memory) or (None, None) if not needed."""
    if context.mode == "incremental" or not self.length_dependent:
      return None, None
    seg = context.subsequence_id
    if not isinstance(seg, mtf.Tensor):
      seg = context.sequence_id
    if not isinstance(seg, mtf.Tensor) or context.length_dim not in seg.shape:
      return None, None  # one example per row: positions are the indices
    if not context.position_is_default:
      qpos = context.position  # already restarts in each segment
    else:
      # position within segment = number of earlier tokens of the same segment
      mseg = mtf.replace_dimensions(seg, context.length_dim, memory_length)
      same = mtf.equal(seg, mseg)
      earlier = mtf.less(mtf.range(context.mesh, memory_length, tf.int32),
                         mtf.range(context.mesh, context.length_dim, tf.int32))
      qpos = mtf.reduce_sum(mtf.to_int32(mtf.logical_and(same, earlier)),
                            reduced_dim=memory_length)
      # Padding (segment 0) keeps its index: it sees only padding, and so an
      # unpacked padded batch has default positions (the fast path).
      index = mtf.broadcast(
          mtf.range(context.mesh, context.length_dim, tf.int32), qpos.shape)
      qpos = mtf.where(mtf.equal(seg, 0), index, qpos)
    return qpos, mtf.replace_dimensions(qpos, context.length_dim, memory_length)

  def call(self, context, x, losses=None):
    """x: [batch..., length, d_model] ([batch..., d_model] when incremental)."""
    incremental = context.mode == "incremental"
    memory_length = self.memory_length(context)
    self._check_length(context, memory_length)
    guards.check_heads_layout(self.num_heads)
    model_dim = context.model.model_dim
    heads, kv = self.heads_dim, self.kv_dim
    m = x if incremental else mtf.replace_dimensions(
        x, context.length_dim, memory_length)

    if incremental:
      one_hot = mtf.one_hot(context.position, memory_length,
                            dtype=context.activation_dtype)

    def remember(t):
      """Keep t ([..., memory_length, ...]) in the incremental-decoding state."""
      if incremental:
        old, = context.get_states(1)
        t = old * (1.0 - one_hot) + t * one_hot
      if context.mode in ("incremental", "first_part"):
        context.record_new_states([t])
      return t

    qpos, mpos = self._segment_positions(context, memory_length)
    sctx = synth_lib.SynthesisContext(
        context=context, x=x, m=m, heads_dim=heads, kv_dim=kv,
        model_dim=model_dim, length_dim=None if incremental else context.length_dim,
        memory_length_dim=memory_length, max_length=self.max_length,
        query_position=qpos, memory_position=mpos,
        decode_position=context.position if incremental else None,
        remember=remember)

    # G(X): values, the only state a pure synthesizer caches.
    wv = sctx.variable("v", [model_dim, heads, kv], model_dim.size ** -0.5)
    v = remember(mtf.einsum([m, wv], reduced_dims=[model_dim]))

    scales = [None]
    if len(self.synthesizers) > 1:
      comp = mtf.Dimension(COMPONENTS_DIM, len(self.synthesizers))
      # Equal logits start the mixture uniform. Ones, not zeros: Adafactor
      # (T5's optimizer) scales updates by max(RMS(param), 1e-3), so a zero
      # start would move alpha ~1000x slower than the other weights.
      init = (tf.ones_initializer() if self.alpha_init is None else
              tf.constant_initializer([self.alpha_init] * heads.size))
      vdt = context.variable_dtype
      alpha = mtf.get_variable(
          context.mesh, "alpha", mtf.Shape([heads, comp]), initializer=init,
          dtype=mtf.VariableDType(vdt.master_dtype, vdt.slice_dtype,
                                  synth_lib.LOGITS_DTYPE))
      alpha = mtf.softmax(alpha, comp)  # sum over functions = 1, per head
      scales = [mtf.gather(alpha, i, comp) for i in range(comp.size)]
    parts = []
    for s, scale in zip(self.synthesizers, scales):
      with tf.variable_scope(s.name):
        parts.append(s.logits(sctx, scale))  # alpha_i * S_i(X)
    logits = parts[0] if len(parts) == 1 else mtf.add_n(parts)

    if incremental:
      memory_position = mtf.range(context.mesh, memory_length, tf.int32)
    else:
      memory_position = self.rename_length_to_memory_length(
          context.position, context)
    bias = self.compute_bias(context, memory_position, x, [heads], x)
    if bias is not None:
      logits += synth_lib.to_logits_dtype(bias)
    weights = mtf.cast(softmax(logits, memory_length), v.dtype)
    if RECORDER is not None:
      RECORDER.append((tf.get_variable_scope().name, weights))
    if context.train and self.dropout_rate > 0.0:
      weights = mtf.dropout(
          weights, context.train, rate=self.dropout_rate,
          noise_shape=weights.shape - context.length_dim)
    o = mtf.einsum([weights, v], reduced_dims=[memory_length])
    wo = sctx.variable("o", [heads, kv, model_dim],
                       (heads.size * kv.size) ** -0.5)
    scope = tf.get_variable_scope().name
    guards.check_against_checkpoint(context.mesh.graph, scope)
    guards.check_init_checkpoint(context.mesh.graph, scope,
                                 self.fresh_variables)
    return mtf.einsum([o, wo], output_shape=x.shape)


def _alpha_logits(alpha_init, names):
  """Initial alpha logits [len(names)] whose softmax is alpha_init, or None."""
  if alpha_init is None:
    return None
  if len(names) < 2:
    raise ValueError("SynthesizerAttention.alpha_init=%r is for mixtures; "
                     "this layer has one synthesizing function (%s). Unset "
                     "it for this model." % (alpha_init, names))
  weights, unknown = {}, []
  for key, value in dict(alpha_init).items():
    try:
      name = synth_lib.build(key).name
    except ValueError:  # not a synthesizer at all: not one of this layer's
      unknown.append(key)
      continue
    if name in weights:  # e.g. 'r' and 'random': which weight is meant?
      raise ValueError(
          "SynthesizerAttention.alpha_init=%r names %s twice (under two of "
          "its names); give each of this layer's functions %s one weight."
          % (alpha_init, name, names))
    weights[name] = value
  unknown = sorted(unknown + list(set(weights) - set(names)))
  rest = [n for n in names if n not in weights]
  left = 1.0 - sum(weights.values())
  if (unknown or any(not 0 < w < 1 for w in weights.values()) or
      (rest and left <= 0) or (not rest and abs(left) > 1e-6)):
    raise ValueError(
        "SynthesizerAttention.alpha_init=%r: give weights in (0, 1) to some of "
        "this layer's functions %s, summing to less than 1 (the others share "
        "the rest), or to all of them summing to 1%s." % (
            alpha_init, names,
            "; unknown: %s" % unknown if unknown else ""))
  for n in rest:
    weights[n] = left / len(rest)
  # log-weights + 1: the softmax is alpha_init, and the values stay away from
  # 0 for Adafactor's relative step (see the uniform case)
  return [math.log(weights[n]) + 1.0 for n in names]


@gin.configurable
class SynthesizerEncDecAttention(transformer_layers.EncDecAttention):
  """Cross-attention cannot be synthesized; this class only explains why.

  Bound in place of EncDecAttention it fails at construction with the reason and
  the fix, instead of silently doing something else.
  """

  def __init__(self, synthesizers=("dense",), **unused_kwargs):  # pylint: disable=super-init-not-called
    names = [synth_lib.build(s).name for s in synthesizers]
    raise ValueError(
        "SynthesizerEncDecAttention(%s): synthesizers cannot replace "
        "encoder-decoder attention. Random and Dense logits are indexed by "
        "positions of the sequence the query belongs to, but cross-attention's "
        "memory is another sequence of another length (the paper keeps "
        "cross-attention standard, section 4). Use "
        "transformer_layers.EncDecAttention in the decoder stack, as "
        "gin/models/synthesizer_stacks.gin does." % names)


def softmax(logits, dim):
  """mtf.softmax whose gradient reads its output alone: y * (dy - sum(dy * y)),
  as TF's own softmax gradient. mtf.softmax is exp(x - logsumexp(x)), and its
  gradient goes back through both exps (softmax's and logsumexp's), so a
  training step kept two [batch, heads, N, N] float32 buffers per layer for the
  backward pass where the output suffices (bench/xla_peak.py)."""

  def grad_fn(explicit_inputs, all_inputs, forward_operations, outputs,
              output_grads):
    del explicit_inputs, all_inputs, forward_operations
    y, dy = outputs[0], output_grads[0]
    return [y * (dy - mtf.reduce_sum(dy * y, reduced_dim=dim))]

  return mtf.custom_gradient(lambda x: mtf.softmax(x, dim), grad_fn, [logits])
