"""Synthesizing functions S(X) of the Synthesizer paper (Tay et al. 2021, Table 1).

Each class turns the layer input into attention logits on named mesh dimensions
[batch..., heads, length, memory_length] (fewer dims where a logit does not depend
on one, e.g. Random has no batch dim). The layer in `attention.py` mixes them with
per-head weights alpha and applies softmax(...) . G(X).

Two families, following the paper's "Sample" column:
  * global (Random, FactorizedRandom): a table T[heads, query_pos, memory_pos]
    shared by all examples;
  * local (Dense, FactorizedDense): each token i predicts a row of logits over
    memory positions from X_i alone.
Both are indexed by *per-segment* positions, so a packed example (T5 packs several
examples into one row) gets exactly the logits it would get alone. The stock
mesh-tensorflow release slices by absolute offset instead.
"""

import dataclasses
import math

import gin
import mesh_tensorflow as mtf
import tensorflow.compat.v1 as tf

MAX_LENGTH_DIM = "max_length"
MAX_MEMORY_LENGTH_DIM = "max_memory_length"


@dataclasses.dataclass
class SynthesisContext:
  """What a synthesizing function needs to know about the current call.

  Built by `SynthesizerAttention.call`; see there for the meaning of each field.
  Attributes:
    context: the mtf.transformer Context.
    x: query antecedent, [batch..., length, d_model] ([batch..., d_model] when
      incremental).
    m: memory antecedent, [batch..., memory_length, d_model] (== x when
      incremental).
    heads_dim, kv_dim, model_dim: mtf.Dimensions.
    length_dim: query length dim (None when incremental).
    memory_length_dim: mtf.Dimension("memory_length", M).
    max_length: int, the size of length-dependent parameters.
    query_position / memory_position: per-segment positions, int32 tensors
      [batch..., length] / [batch..., memory_length] when the batch may be packed;
      None means "the index along the dim" (fast slicing path).
    decode_position: int32 tensor (scalar or [batch...]) when incremental.
    remember: fn(tensor) -> tensor, keeps a per-memory-position tensor in the
      incremental-decoding state (returns the full cached tensor).
  """

  context: object
  x: object
  m: object
  heads_dim: object
  kv_dim: object
  model_dim: object
  length_dim: object
  memory_length_dim: object
  max_length: int
  query_position: object
  memory_position: object
  decode_position: object
  remember: object

  @property
  def incremental(self):
    return self.context.mode == "incremental"

  @property
  def packed(self):
    return self.query_position is not None

  def variable(self, name, dims, stddev, trainable=True, logit=False):
    """logit=True: a parameter that logits are made of, read in float32."""
    return get_variable(self.context, name, dims, stddev, self.heads_dim,
                        self.kv_dim, trainable,
                        LOGITS_DTYPE if logit else None)


# Logits, their mixture, masks and softmax are computed in float32 whatever the
# activation dtype, as mesh-tensorflow's attention does (float32_logits): with
# bfloat16 activations (T5 on TPU) a logit of ~10 would carry an error of ~0.05.
LOGITS_DTYPE = tf.float32


def to_logits_dtype(t):
  return mtf.cast(t, LOGITS_DTYPE) if t.dtype != LOGITS_DTYPE else t


def get_variable(context, name, dims, stddev, heads_dim, kv_dim,
                 trainable=True, activation_dtype=None):
  """A normal-initialized variable of shape dims, where an adjacent
  (heads, d_kv) pair is stored as one dimension named heads, as mtf's own
  attention stores q, k, v and o (AttentionParams.combine_dims).

  Why: Adafactor (T5's optimizer) factors the second moment over the two
  largest dims only if the second one has >= 128 entries; [d_model, heads, d_kv]
  with d_kv < 128 (T5: 64) would keep a full, parameter-sized second moment (more
  optimizer memory and work, and other dynamics than stock SelfAttention), while
  [d_model, heads*d_kv] is factored like the stock layer's. The split heads
  layout still applies: the stored dim keeps the name heads, and the reshape
  back is local on every processor.
  """
  dims = list(dims)
  stored = dims
  if heads_dim in dims:
    i = dims.index(heads_dim)
    if i + 1 < len(dims) and dims[i + 1] == kv_dim:
      stored = dims[:i] + [mtf.Dimension(heads_dim.name, heads_dim.size *
                                         kv_dim.size)] + dims[i + 2:]
  dtype = context.variable_dtype
  if activation_dtype is not None:
    dtype = mtf.VariableDType(dtype.master_dtype, dtype.slice_dtype,
                              activation_dtype)
  var = mtf.get_variable(
      context.mesh, name, mtf.Shape(stored),
      initializer=tf.random_normal_initializer(stddev=stddev),
      dtype=dtype, trainable=trainable)
  return var if stored is dims else mtf.reshape(var, mtf.Shape(dims))


def _max_dims(max_length):
  return (mtf.Dimension(MAX_LENGTH_DIM, max_length),
          mtf.Dimension(MAX_MEMORY_LENGTH_DIM, max_length))


class SynthesizingFunction(object):
  """Base class. Subclasses define `name` (variable scope) and `logits`."""

  name = None

  def logits(self, sctx, scale=None):
    """Attention logits; times scale ([heads], a mixture's alpha) if given.

    Each function applies scale where it is cheapest (a table, a weight
    matrix or the queries), never to a [batch, heads, length, memory] tensor:
    there the multiply and the reduction of alpha's gradient would cost passes
    over the largest tensor of the layer (bench/README.md has the
    measurement)."""
    raise NotImplementedError

  def num_params(self, d_model, num_heads, d_kv, max_length):
    """Parameter count, the |theta| column of the paper's Table 1."""
    raise NotImplementedError

  def formula(self):
    """Table 1's |theta| in terms of d=d_model, h, d_kv, N=max_length."""
    raise NotImplementedError

  def constants(self, max_length):
    """Values of the formula's other symbols (k, a, b)."""
    del max_length
    return {}

  def validate(self, max_length):
    """Raise ValueError for hyper-parameters inconsistent with max_length."""

  def __repr__(self):
    return "%s()" % type(self).__name__


class GlobalSynthesizer(SynthesizingFunction):
  """Logits from a table T[heads, query_pos, memory_pos] shared by all inputs."""

  def table(self, sctx, rows, cols):
    """T[:, :rows, :cols] as [heads, max_length(rows), max_memory_length(cols)]."""
    raise NotImplementedError

  def row(self, sctx, position, cols):
    """T[:, position, :cols] as [position's dims..., heads, max_memory_length].

    What one decoding step reads: computing only this row, not the table,
    saves a pass over h x N x N per layer and step."""
    raise NotImplementedError

  def logits(self, sctx, scale=None):
    m_len = sctx.memory_length_dim
    if sctx.incremental:
      t = self.row(sctx, sctx.decode_position, m_len.size)
      t = mtf.rename_dimension(t, MAX_MEMORY_LENGTH_DIM, m_len.name)
      return t if scale is None else t * scale
    length = sctx.length_dim
    t = self.table(sctx, length.size, m_len.size)
    if scale is not None:
      t *= scale  # on the table, before it is broadcast over the batch
    t = mtf.rename_dimension(t, MAX_LENGTH_DIM, length.name)
    t = mtf.rename_dimension(t, MAX_MEMORY_LENGTH_DIM, m_len.name)
    if not sctx.packed:
      return t  # [heads, length, memory_length], broadcast over the batch
    return _gather_table(t, sctx)


def heads_before_length(sctx, shape):
  """shape with heads ahead of the query length: [..., heads, length, memory],
  the order of Random's logits and of the weights x values einsum, so that
  XLA need not keep a transposed copy of the h x N x N weights (measured:
  one more per layer at the peak of Dense's training step)."""
  dims = shape.dims
  if sctx.length_dim is None or sctx.heads_dim not in dims:
    return shape
  dims = [d for d in dims if d != sctx.heads_dim]
  dims.insert(dims.index(sctx.length_dim), sctx.heads_dim)
  return mtf.Shape(dims)


def _take_row(t, position):
  """t at `position` along max_length: [position's dims..., t's other dims].

  A real gather: mtf.gather is a one-hot einsum, i.e. a pass over the whole
  table per decoding step (bench/README.md has the measurement)."""
  dim = t.shape.get_dim_by_name(MAX_LENGTH_DIM)
  axis = t.shape.dims.index(dim)
  rest = t.shape.dims[:axis] + t.shape.dims[axis + 1:]

  def fn(table, pos):
    out = tf.gather(table, pos, axis=axis)  # [rest before, pos dims, rest after]
    n = pos.shape.ndims
    return tf.transpose(out, list(range(axis, axis + n)) + list(range(axis)) +
                        list(range(axis + n, out.shape.ndims)))

  return mtf.slicewise(fn, [t, position],
                       output_shape=mtf.Shape(position.shape.dims + rest),
                       output_dtype=t.dtype,
                       splittable_dims=position.shape.dims + rest,
                       name="take_synthetic_row")


def _all_default(*positions):
  """True when every row's positions are 0..n-1: an unpacked batch.

  T5 always passes segment ids (padding), so the packed path is built; at run
  time this skips its gather (and the scatter-add of its gradient) when no row
  holds a second example."""
  return tf.reduce_all([
      tf.reduce_all(tf.equal(p, tf.range(tf.shape(p)[-1], dtype=p.dtype)))
      for p in positions])


def _take_last(x, idx):
  """y[..., k] = x[..., idx[..., k]]: a gather along x's last axis; idx
  broadcasts to x's shape."""
  idx = tf.broadcast_to(idx, tf.shape(x))
  return tf.gather(x, idx, axis=-1, batch_dims=x.shape.ndims - 1)


# XLA compiles no scatter of 2**31 or more indices (one per element of dy):
# "Scatter operations with more than 2147483647 scatter indices are not
# supported" (float32, length 16384, batch 4, 6 heads: 6.4e9).
_MAX_SCATTER = 2 ** 31 - 1


def _take_last_grad(dy, idx):
  """The gradient of _take_last: dx[..., j] = sum of dy[..., k] over the k
  with idx[..., k] = j: one scatter-add with int32 ids, or, past XLA's limit,
  one per slice of dy's leading axis, concatenated."""
  size = dy.shape.num_elements()
  if size <= _MAX_SCATTER:
    shape = tf.shape(dy)
    n = shape[-1]
    rows = tf.reshape(tf.range(size // n), tf.concat([shape[:-1], [1]], 0))
    ids = rows * n + tf.broadcast_to(tf.cast(idx, tf.int32), shape)
    return tf.reshape(tf.math.unsorted_segment_sum(dy, ids, size), shape)
  if dy.shape.ndims == 1:
    raise ValueError(
        "the packed-input gather of synthetic logits needs one row of %d "
        "entries, past XLA's scatter limit of 2**31 - 1: use a shorter "
        "max_length" % size)
  idx = tf.reshape(idx, [1] * (dy.shape.ndims - idx.shape.ndims) +
                   idx.shape.as_list())
  lead = dy.shape[0]
  if lead == 1:
    return _take_last_grad(dy[0], idx[0])[None]
  per = max(1, lead * _MAX_SCATTER // size)  # leading entries per scatter
  return tf.concat([_take_last_grad(
      dy[s:s + per], idx if idx.shape[0] == 1 else idx[s:s + per])
                    for s in range(0, lead, per)], 0)


def _take_last_unless_default(x, index, default):
  """_take_last(x, index()), skipped (x itself) when `default` (a bool scalar:
  every row unpacked, the index the identity). index() is called inside the
  branches, so that the step keeps no index live between forward and backward.

  The gradient is one tf.cond as well, written here: tf.cond's own gradient
  (TF1 control flow) adds a zeros tensor per branch and sums them, and XLA
  keeps that sum as one more [batch, heads, N, N] buffer at the peak of a
  mixture's step (bench/xla_peak.py, length 2048: R+D 4.014 -> 3.639 GiB,
  D+V 3.711 -> 3.336 GiB)."""

  @tf.custom_gradient
  def take(x):
    def grad(dy):
      return tf.cond(default, lambda: dy, lambda: _take_last_grad(dy, index()))
    return tf.cond(default, lambda: x, lambda: _take_last(x, index())), grad

  return take(x)


def _gather_table(t, sctx):
  """logits[b, h, i, j] = t[h, qpos[b, i], mpos[b, j]] (per-segment positions)."""
  qpos, mpos = sctx.query_position, sctx.memory_position
  batch_dims = [d for d in qpos.shape.dims if d != sctx.length_dim]
  # Broadcast over the batch first: the gradient of a table that slicewise sees
  # replicated on batch-split processors would not be summed over them; the
  # gradient of mtf.broadcast is (an all-reduced reduce_sum over the batch).
  t = mtf.broadcast(t, mtf.Shape(batch_dims + t.shape.dims))

  def fn(table, q, m):
    h, n_q, n_m = table.shape[-3], table.shape[-2], table.shape[-1]
    flat = tf.reshape(table, [-1, h, n_q * n_m])
    out = _take_last_unless_default(flat, lambda: tf.reshape(
        q[..., :, None] * n_m + m[..., None, :], [-1, 1, n_q * n_m]),
                                    _all_default(q, m))
    return tf.reshape(out, tf.shape(table))

  return mtf.slicewise(fn, [t, qpos, mpos], output_shape=t.shape,
                       output_dtype=t.dtype,
                       splittable_dims=batch_dims + [t.shape.dims[-3]],
                       name="gather_synthetic_table")


@gin.configurable
class Random(GlobalSynthesizer):
  """Random Synthesizer, S(X) = R with R[heads, N, N] (eq. 4).

  trainable=False gives the paper's "Fixed" Random Synthesizer: R keeps its random
  initial value but is still a checkpointed variable (so restarts and evaluation see
  the same matrix).
  """

  def __init__(self, trainable=True, stddev=1.0):
    self.trainable = trainable
    self.stddev = stddev

  @property
  def name(self):
    return "random" if self.trainable else "fixed_random"

  def _r(self, sctx):
    return sctx.variable("R", [sctx.heads_dim] + list(_max_dims(sctx.max_length)),
                         self.stddev, trainable=self.trainable, logit=True)

  def table(self, sctx, rows, cols):
    r = mtf.slice(self._r(sctx), 0, rows, MAX_LENGTH_DIM)
    return mtf.slice(r, 0, cols, MAX_MEMORY_LENGTH_DIM)

  def row(self, sctx, position, cols):
    return mtf.slice(_take_row(self._r(sctx), position), 0, cols,
                     MAX_MEMORY_LENGTH_DIM)

  def num_params(self, d_model, num_heads, d_kv, max_length):
    return num_heads * max_length * max_length

  def formula(self):
    return "h*N^2"

  def __repr__(self):
    return "Random(trainable=%s)" % self.trainable


@gin.configurable
def FixedRandom(stddev=1.0):  # pylint: disable=invalid-name
  """The paper's Fixed Random Synthesizer: a non-trainable Random."""
  return Random(trainable=False, stddev=stddev)


@gin.configurable
class FactorizedRandom(GlobalSynthesizer):
  """Factorized Random Synthesizer, S(X) = R1 R2^T, R1, R2 in R^{N x k} (eq. 7)."""

  name = "factorized_random"

  def __init__(self, k=8):
    if k < 1:
      raise ValueError("FactorizedRandom.k must be >= 1, got %r" % (k,))
    self.k = k

  def _factors(self, sctx, cols):
    """R1 [heads, N, k] and R2[:, :cols] [heads, max_memory_length, k]."""
    n_q, n_m = _max_dims(sctx.max_length)
    k_dim = mtf.Dimension("synth_k", self.k)
    # std k^-1/4 each, so that R1 R2^T has unit variance like Random's R.
    std = self.k ** -0.25
    r1 = sctx.variable("R1", [sctx.heads_dim, n_q, k_dim], std, logit=True)
    r2 = sctx.variable("R2", [sctx.heads_dim, n_m, k_dim], std, logit=True)
    return r1, mtf.slice(r2, 0, cols, MAX_MEMORY_LENGTH_DIM), k_dim

  def table(self, sctx, rows, cols):
    r1, r2, k_dim = self._factors(sctx, cols)
    r1 = mtf.slice(r1, 0, rows, MAX_LENGTH_DIM)
    return mtf.einsum([r1, r2], reduced_dims=[k_dim])

  def row(self, sctx, position, cols):
    r1, r2, k_dim = self._factors(sctx, cols)
    return mtf.einsum([_take_row(r1, position), r2], reduced_dims=[k_dim])

  def num_params(self, d_model, num_heads, d_kv, max_length):
    return num_heads * 2 * max_length * self.k

  def formula(self):
    return "2*h*N*k"

  def constants(self, max_length):
    return {"k": self.k}

  def __repr__(self):
    return "FactorizedRandom(k=%d)" % self.k


class LocalSynthesizer(SynthesizingFunction):
  """Logits conditioned on X_i alone: token i predicts its row of logits."""

  def hidden(self, sctx):
    """sigma_R(W1 X_i), per head: [batch..., length?, heads, d_kv], float32
    (the projection to logits that follows is computed in float32)."""
    w1 = sctx.variable("W1", [sctx.model_dim, sctx.heads_dim, sctx.kv_dim],
                       sctx.model_dim.size ** -0.5)
    return to_logits_dtype(
        mtf.relu(mtf.einsum([sctx.x, w1], reduced_dims=[sctx.model_dim])))

  def rows(self, sctx, cols, scale):
    """Logits over memory positions [:cols]: [..., heads, max_memory_length],
    times scale ([heads] or None)."""
    raise NotImplementedError

  def logits(self, sctx, scale=None):
    m_len = sctx.memory_length_dim
    rows = self.rows(sctx, m_len.size, scale)
    rows = mtf.rename_dimension(rows, MAX_MEMORY_LENGTH_DIM, m_len.name)
    if not sctx.packed:
      return rows
    # Column j of token i is memory_position[j], its position in its segment.
    mpos = sctx.memory_position
    batch_dims = mpos.shape.dims[:-1]
    other = [d for d in rows.shape.dims if d not in batch_dims]  # length, heads, M
    rows = mtf.transpose(rows, batch_dims + other)

    def fn(r, m):
      # r: [batch..., length, heads, M]; m: [batch..., M] -> take_along_axis.
      return _take_last_unless_default(r, lambda: m[..., None, None, :],
                                       _all_default(m))

    return mtf.slicewise(fn, [rows, mpos], output_shape=rows.shape,
                         output_dtype=rows.dtype,
                         splittable_dims=batch_dims + other[:-1],
                         name="gather_synthetic_rows")


@gin.configurable
class Dense(LocalSynthesizer):
  """Dense Synthesizer, S(X)_i = W2 sigma_R(W1 X_i) (eq. 1-2), per head.

  W1: d_model -> d_kv and W2: d_kv -> N for each head; with h*d_kv = d this is the
  paper's d^2 + d*N parameters. share_w2=True: one W2 for every head, as
  mesh-tensorflow's own Synthesizer has it (W1 stays per head).
  """

  name = "dense"

  def __init__(self, share_w2=False):
    if not isinstance(share_w2, bool):
      raise ValueError("Dense.share_w2 must be True (one W2 for every head, "
                       "as mesh-tensorflow's Synthesizer) or False (one per "
                       "head, the paper's); got %r." % (share_w2,))
    self.share_w2 = share_w2

  def rows(self, sctx, cols, scale):
    heads = [] if self.share_w2 else [sctx.heads_dim]
    w2 = sctx.variable(
        "W2", heads + [sctx.kv_dim,
                       mtf.Dimension(MAX_MEMORY_LENGTH_DIM, sctx.max_length)],
        sctx.kv_dim.size ** -0.5, logit=True)
    w2 = mtf.slice(w2, 0, cols, MAX_MEMORY_LENGTH_DIM)
    if scale is not None:
      w2 *= scale
    h = self.hidden(sctx)
    memory = w2.shape.get_dim_by_name(MAX_MEMORY_LENGTH_DIM)
    rest = [d for d in w2.shape.dims if d not in h.shape.dims + [memory]]
    out = mtf.Shape((h.shape - sctx.kv_dim).dims + rest + [memory])
    return mtf.einsum([h, w2], output_shape=heads_before_length(sctx, out))

  def num_params(self, d_model, num_heads, d_kv, max_length):
    w2_copies = 1 if self.share_w2 else num_heads
    return d_model * num_heads * d_kv + w2_copies * d_kv * max_length

  def formula(self):
    return "d*h*d_kv + d_kv*N" if self.share_w2 else "d*h*d_kv + h*d_kv*N"

  def __repr__(self):
    return "Dense(share_w2=True)" if self.share_w2 else "Dense()"


def _default_factors(n):
  a = max(i for i in range(1, int(math.isqrt(n)) + 1) if n % i == 0)
  return a, n // a


@gin.configurable
class FactorizedDense(LocalSynthesizer):
  """Factorized Dense Synthesizer, S(X)_i = H_A(F_A(X_i)) * H_B(F_B(X_i)) (eq. 5-6).

  F_A, F_B project the shared hidden sigma_R(W1 X_i) to a and b logits per head,
  a*b = N (max_length). H_A tiles A b times and H_B repeats each entry of B a
  times, so column j gets A[j mod a] * B[j div a]: N distinct pairs, the paper's
  "avoid similar values within the same block". a=b=None picks the most square
  factorization of max_length.
  """

  name = "factorized_dense"

  def __init__(self, a=None, b=None):
    for name, n in (("a", a), ("b", b)):
      if n is not None and (isinstance(n, bool) or not isinstance(n, int) or
                            n < 1):
        raise ValueError(
            "FactorizedDense.%s must be a positive integer, or None to derive "
            "it from SynthesizerAttention.max_length; got %r." % (name, n))
    self.a = a
    self.b = b

  def factors(self, max_length):
    """(a, b); one left unset is max_length // the other."""
    if self.a is None and self.b is None:
      return _default_factors(max_length)
    a = self.a if self.a is not None else max_length // self.b
    b = self.b if self.b is not None else max_length // self.a
    return a, b

  def validate(self, max_length):
    a, b = self.factors(max_length)
    if a * b != max_length:
      derived = ("" if None not in (self.a, self.b) else
                 ", %s = max_length // %s" % (("b", "a") if self.b is None
                                              else ("a", "b")))
      raise ValueError(
          "FactorizedDense needs a*b == max_length, got a=%d, b=%d and "
          "max_length=%d (a*b=%d%s). Set FactorizedDense.a and FactorizedDense.b to "
          "factors of SynthesizerAttention.max_length, or leave both unset."
          % (a, b, max_length, a * b, derived))

  def rows(self, sctx, cols, scale):
    a, b = self.factors(sctx.max_length)
    a_dim, b_dim = mtf.Dimension("synth_a", a), mtf.Dimension("synth_b", b)
    std = sctx.kv_dim.size ** -0.5
    wa = sctx.variable("WA", [sctx.heads_dim, sctx.kv_dim, a_dim], std,
                       logit=True)
    wb = sctx.variable("WB", [sctx.heads_dim, sctx.kv_dim, b_dim], std,
                       logit=True)
    h = self.hidden(sctx)
    fa = mtf.einsum([h, wa], reduced_dims=[sctx.kv_dim])  # [..., heads, a]
    if scale is not None:
      fa *= scale
    fb = mtf.einsum([h, wb], reduced_dims=[sctx.kv_dim])  # [..., heads, b]
    outer = fa.shape - a_dim + [b_dim, a_dim]
    n_dim = mtf.Dimension(MAX_MEMORY_LENGTH_DIM, a * b)
    flat = fa.shape - a_dim + [n_dim]
    # index j = ib * a + ia  ->  A[j mod a] * B[j div a]
    tiled_a = mtf.reshape(mtf.broadcast(fa, outer), flat)
    repeated_b = mtf.reshape(mtf.broadcast(fb, outer), flat)
    product = mtf.einsum([tiled_a, repeated_b],
                         output_shape=heads_before_length(sctx, flat))
    return mtf.slice(product, 0, cols, MAX_MEMORY_LENGTH_DIM)

  def num_params(self, d_model, num_heads, d_kv, max_length):
    a, b = self.factors(max_length)
    return d_model * num_heads * d_kv + num_heads * d_kv * (a + b)

  def formula(self):
    return "d*h*d_kv + h*d_kv*(a+b)"

  def constants(self, max_length):
    a, b = self.factors(max_length)
    return {"a": a, "b": b}

  def __repr__(self):
    return "FactorizedDense(a=%r, b=%r)" % (self.a, self.b)


@gin.configurable
class DotProduct(SynthesizingFunction):
  """Vanilla attention as a synthesizing function, S(X) = F_Q(X) F_K(X)^T.

  As in T5, the 1/sqrt(d_kv) scaling is folded into the initializer of W_Q.
  """

  # The variables' scope (.../SynthesizerAttention/dot_product/q): every
  # checkpoint written so far has it. Users name the function "vanilla".
  name = "dot_product"

  def logits(self, sctx, scale=None):
    d, kv = sctx.model_dim, sctx.kv_dim
    wq = sctx.variable("q", [d, sctx.heads_dim, kv], (d.size * kv.size) ** -0.5)
    wk = sctx.variable("k", [d, sctx.heads_dim, kv], d.size ** -0.5)
    q = to_logits_dtype(mtf.einsum([sctx.x, wq], reduced_dims=[d]))
    if scale is not None:
      q *= scale
    # the cache keeps keys in the activation dtype, as mtf's attention does
    k = sctx.remember(mtf.einsum([sctx.m, wk], reduced_dims=[d]))
    return mtf.einsum([q, to_logits_dtype(k)], reduced_dims=[kv])

  def num_params(self, d_model, num_heads, d_kv, max_length):
    return 2 * d_model * num_heads * d_kv

  def formula(self):
    return "2*d*h*d_kv"


# Names accepted in SynthesizerAttention.synthesizers (gin strings). T5's own
# attention is "vanilla" (the paper's V, the catalogue's baseline row).
REGISTRY = {
    "random": Random,
    "fixed_random": FixedRandom,
    "factorized_random": FactorizedRandom,
    "dense": Dense,
    "factorized_dense": FactorizedDense,
    "vanilla": DotProduct,
}
# The paper's short names (Table 2 rows) as aliases, and the name of V's
# class and checkpoint scope.
ALIASES = {"r": "random", "fix": "fixed_random", "fr": "factorized_random",
           "d": "dense", "fd": "factorized_dense", "v": "vanilla",
           "dot_product": "vanilla"}


def build(spec):
  """A SynthesizingFunction from a name (see REGISTRY/ALIASES) or an instance."""
  if isinstance(spec, SynthesizingFunction):
    return spec
  if isinstance(spec, str):
    key = ALIASES.get(spec.lower(), spec.lower())
    if key in REGISTRY:
      return REGISTRY[key]()
  raise ValueError(
      "Unknown synthesizer %r in SynthesizerAttention.synthesizers. Use one of %s "
      "(aliases %s) or a synth_mtf.synthesizers instance such as "
      "@FactorizedRandom()." % (spec, sorted(REGISTRY), sorted(ALIASES)))
