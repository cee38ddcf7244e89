"""Linformer baseline (Table 7) vs a NumPy re-implementation; refuses decoders."""

import numpy as np
import pytest

import harness
import reference
from synth_mtf.baselines import LinformerAttention


def numpy_linformer(x, w, seq):
  keep = (np.asarray(seq) != 0).astype(np.float32)[:, :, None, None]
  n = x.shape[1]
  q = np.einsum("bnd,dhk->bnhk", x, w["q"])
  k = np.einsum("bnd,dhk->bnhk", x, w["k"]) * keep
  v = np.einsum("bnd,dhk->bnhk", x, w["v"]) * keep
  e, f = w["E"][:, :n], w["F"][:, :n]  # [h, N, k] sliced to the length
  kp = np.einsum("bnhc,hnj->bhjc", k, e)  # E K
  vp = np.einsum("bnhc,hnj->bhjc", v, f)  # F V
  att = reference.softmax(np.einsum("bihc,bhjc->bhij", q, kp))
  o = np.einsum("bhij,bhjc->bihc", att, vp)
  return np.einsum("bihc,hcd->bid", o, w["o"])


def test_linformer_matches_numpy():
  x = np.random.RandomState(0).randn(2, 6, 8).astype(np.float32)
  seq = [[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]]
  layer = LinformerAttention(k=3, max_length=8, num_heads=2, key_value_size=4)
  out = harness.run_layer(layer, x, sequence_id=seq)
  w = {n: harness.var(out, "/" + n) for n in ("q", "k", "v", "o", "E", "F")}
  np.testing.assert_allclose(out["y"], numpy_linformer(x, w, seq), atol=1e-5)
  size = sum(v.size for v in w.values())
  assert size == layer.num_params(8)


def test_linformer_refuses_the_decoder():
  layer = LinformerAttention(k=3, max_length=8, num_heads=2, key_value_size=4)
  with pytest.raises(ValueError, match="cannot attend causally.*encoder stack"):
    harness.run_layer(layer, np.ones((1, 4, 8), np.float32), causal=True)


def test_linformer_refuses_packed_batches():
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  layer = LinformerAttention(k=3, max_length=8, num_heads=2, key_value_size=4)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="packed batch.*pack = False"):
    harness.run_layer(layer, np.ones((1, 4, 8), np.float32),
                      sequence_id=[[1, 1, 2, 2]])


def test_linformer_length_limit():
  layer = LinformerAttention(k=3, max_length=4, num_heads=2, key_value_size=4)
  with pytest.raises(ValueError, match=r"Sequence length 6 exceeds "
                     r"LinformerAttention.max_length=4"):
    harness.run_layer(layer, np.ones((1, 6, 8), np.float32))
