"""NumPy re-implementation of the paper's formulas (section 3.1), written from the
equations, independent of synth_mtf's mesh code."""

import numpy as np

NEG = -1e9


def softmax(z, axis=-1):
  z = z - z.max(axis=axis, keepdims=True)
  e = np.exp(z)
  return e / e.sum(axis=axis, keepdims=True)


def segment_positions(seq):
  """Position of each token inside its example: [b, n] -> [b, n]."""
  seq = np.asarray(seq)
  pos = np.zeros_like(seq)
  for b in range(seq.shape[0]):
    for i in range(seq.shape[1]):
      pos[b, i] = 0 if i == 0 or seq[b, i] != seq[b, i - 1] else pos[b, i - 1] + 1
      if seq[b, i] == 0:  # padding keeps its index (it only sees padding)
        pos[b, i] = i
  return pos


def synth_logits(kind, x, w, pos, factors=None):
  """Logits [b, h, n, n] of one synthesizing function.

  x: [b, n, d]; w: dict of the function's weights; pos: [b, n] positions.
  """
  b, n, _ = x.shape
  if kind in ("random", "fixed_random", "factorized_random"):
    if kind == "factorized_random":
      r = np.einsum("hik,hjk->hij", w["R1"], w["R2"])  # R1 R2^T
    else:
      r = w["R"]
    return np.stack([r[:, pos[i]][:, :, pos[i]] for i in range(b)])
  if kind in ("dense", "factorized_dense"):
    hid = np.maximum(np.einsum("bnd,dhk->bnhk", x, w["W1"]), 0.0)
    if kind == "dense":
      w2 = w["W2"]
      if w2.ndim == 2:  # one W2 for every head (mesh-tensorflow's release)
        w2 = np.stack([w2] * hid.shape[2])
      rows = np.einsum("bnhk,hkm->bhnm", hid, w2)  # F(X_i) in R^N
    else:
      a, bb = factors
      fa = np.einsum("bnhk,hka->bhna", hid, w["WA"])
      fb = np.einsum("bnhk,hkc->bhnc", hid, w["WB"])
      j = np.arange(a * bb)
      rows = fa[..., j % a] * fb[..., j // a]  # H_A(A) * H_B(B)
    return np.stack([rows[i][:, :, pos[i]] for i in range(b)])
  if kind == "dot_product":
    q = np.einsum("bnd,dhk->bhnk", x, w["q"])
    k = np.einsum("bnd,dhk->bhnk", x, w["k"])
    return np.einsum("bhik,bhjk->bhij", q, k)
  raise ValueError(kind)


def layer(x, kinds, w, seq=None, causal=False, factors=None):
  """Y = softmax(sum_i alpha_i S_i(X) + mask) G(X), then the output projection.

  w: {"v", "o", "alpha"(if mixture), kind: {weights}}.
  """
  b, n, _ = x.shape
  seq = np.ones((b, n), np.int32) if seq is None else np.asarray(seq)
  pos = segment_positions(seq)
  parts = [synth_logits(k, x, w[k], pos, factors) for k in kinds]
  if len(parts) == 1:
    logits = parts[0]
  else:
    alpha = softmax(w["alpha"], axis=-1)  # [h, n_functions]
    logits = sum(alpha[:, i][None, :, None, None] * p
                 for i, p in enumerate(parts))
  visible = seq[:, :, None] == seq[:, None, :]
  if causal:
    visible = visible & np.tril(np.ones((n, n), bool))[None]
  logits = logits + np.where(visible, 0.0, NEG)[:, None]
  att = softmax(logits, -1)
  v = np.einsum("bnd,dhk->bhnk", x, w["v"])
  o = np.einsum("bhij,bhjk->bhik", att, v)
  return np.einsum("bhik,hkd->bid", o, w["o"]), att
