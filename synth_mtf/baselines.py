"""Baselines of the paper's comparisons that mesh-tensorflow lacks.

Linformer (Wang et al. 2020, "Linformer: Self-Attention with Linear Complexity"),
the Table 7 baseline: keys and values are projected along the length axis to k
rows (E K, F V), so attention costs O(N k). DyConv and LightConv (Table 4) already
exist in mesh-tensorflow (DynamicConv1DLocalAttn, LightweightConv1DLocalAttn).
"""

import gin
import mesh_tensorflow as mtf
from mesh_tensorflow.transformer import transformer_layers
import tensorflow.compat.v1 as tf

from synth_mtf import synthesizers


@gin.configurable
class LinformerAttention(transformer_layers.SelfAttention):
  """Linformer self-attention for encoder stacks.

  Y = softmax(Q (E K)^T) (F V), E, F in R^{k x N} per head, sliced to the actual
  length. Padding rows of K and V are zeroed before the projection. Linformer
  mixes all positions into k rows, so it cannot be causal (no decoder, no LM)
  and cannot keep packed examples apart: train it on unpacked data
  (mesh_train_dataset_fn.pack = False); a packed batch fails at run time.
  """

  def __init__(self, k=32, max_length=512, num_heads=None, key_value_size=None,
               dropout_rate=None):
    overrides = dict(num_heads=num_heads, key_value_size=key_value_size,
                     dropout_rate=dropout_rate)
    super(LinformerAttention, self).__init__(
        **{n: v for n, v in overrides.items() if v is not None})
    if k < 1 or max_length < 1:
      raise ValueError("LinformerAttention needs k >= 1 and max_length >= 1, got "
                       "k=%r, max_length=%r." % (k, max_length))
    self.k = k
    self.max_length = max_length

  def num_params(self, d_model):
    h, dkv = self.num_heads, self.key_value_size
    return 4 * d_model * h * dkv + 2 * h * self.max_length * self.k

  def call(self, context, x, losses=None):
    """x: [batch..., length, d_model] -> same shape."""
    if (context.mode in ("incremental", "first_part") or
        context.read_priority is not None):
      raise ValueError(
          "LinformerAttention cannot attend causally: it projects the whole "
          "sequence to k rows. Use it in the encoder stack only "
          "(encoder/transformer.make_layer_stack.layers), not in a decoder or "
          "an LM (utils.run.model_type='lm').")
    length = context.length_dim
    if length.size > self.max_length:
      raise ValueError(
          "Sequence length %d exceeds LinformerAttention.max_length=%d. Bind "
          "--gin_param=\"LinformerAttention.max_length = %d\" (or more)."
          % (length.size, self.max_length, length.size))
    d = context.model.model_dim
    heads = mtf.Dimension("heads", self.num_heads)
    kv = self.kv_dim
    memory_length = self.memory_length(context)
    k_dim = mtf.Dimension("linformer_k", self.k)
    m = mtf.replace_dimensions(x, length, memory_length)

    def var(name, dims, std):
      return synthesizers.get_variable(context, name, dims, std, heads, kv)

    q = mtf.einsum([x, var("q", [d, heads, kv], (d.size * kv.size) ** -0.5)],
                   reduced_dims=[d])
    keys = mtf.einsum([m, var("k", [d, heads, kv], d.size ** -0.5)],
                      reduced_dims=[d])
    values = mtf.einsum([m, var("v", [d, heads, kv], d.size ** -0.5)],
                        reduced_dims=[d])
    seq = context.sequence_id
    if isinstance(seq, mtf.Tensor) and length in seq.shape:
      seq = _assert_unpacked(seq)
      keep = mtf.cast(mtf.not_equal(
          mtf.replace_dimensions(seq, length, memory_length), 0),
                      context.activation_dtype)
      keys *= keep
      values *= keep
    max_m = mtf.Dimension("max_memory_length", self.max_length)
    proj = []
    for name in ("E", "F"):
      p = var(name, [heads, max_m, k_dim], self.max_length ** -0.5)
      p = mtf.slice(p, 0, memory_length.size, max_m.name)
      proj.append(mtf.rename_dimension(p, max_m.name, memory_length.name))
    keys = mtf.einsum([keys, proj[0]], reduced_dims=[memory_length])
    values = mtf.einsum([values, proj[1]], reduced_dims=[memory_length])
    logits = mtf.einsum([q, keys], reduced_dims=[kv])
    weights = mtf.softmax(logits, k_dim)
    if context.train and self.dropout_rate > 0.0:
      weights = mtf.dropout(weights, context.train, rate=self.dropout_rate)
    o = mtf.einsum([weights, values], reduced_dims=[k_dim])
    wo = var("o", [heads, kv, d], (heads.size * kv.size) ** -0.5)
    return mtf.einsum([o, wo], output_shape=x.shape)


def _assert_unpacked(seq):
  """seq unchanged, with a run-time check that no row holds two examples."""
  def fn(s):
    check = tf.debugging.assert_less_equal(
        s, tf.ones_like(s), message=(
            "LinformerAttention got a packed batch (segment ids > 1): it cannot "
            "keep packed examples apart. Set mesh_train_dataset_fn.pack = False "
            "(and mesh_eval_dataset_fn's) for Linformer runs."))
    with tf.control_dependencies([check]):
      return tf.identity(s)
  return mtf.slicewise(fn, [seq], output_shape=seq.shape, output_dtype=seq.dtype,
                       splittable_dims=seq.shape.dims)
