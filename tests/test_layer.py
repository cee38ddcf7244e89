"""SynthesizerAttention vs the NumPy re-implementation of the paper's formulas."""

import numpy as np
import pytest

import harness
from harness import H, SEQ, VARIANTS, alpha_values, make_layer, x_input  # pylint: disable=g-multiple-import
import reference
from synth_mtf import attention
from synth_mtf import synthesizers
from synth_mtf.attention import SynthesizerAttention

def weights_of(out, kinds):
  w = {"v": harness.var(out, "/v"), "o": harness.var(out, "/o")}
  if len(kinds) > 1:
    w["alpha"] = harness.var(out, "/alpha")
  for k in kinds:
    w[k] = {n.split("/")[-1]: v for n, v in out["vars"].items()
            if "/%s/" % k in n}
  return w


@pytest.mark.parametrize("kinds", VARIANTS, ids="+".join)
@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "causal"])
def test_layer_matches_numpy_formula(kinds, causal):
  x = x_input()
  out = harness.run_layer(make_layer(kinds), x, sequence_id=SEQ, causal=causal,
                          var_values=alpha_values(kinds))
  want, _ = reference.layer(x, kinds, weights_of(out, kinds), seq=SEQ,
                            causal=causal, factors=(2, 4))
  np.testing.assert_allclose(out["y"], want, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("kinds", [["dense"], ["dense", "dot_product"]],
                         ids="+".join)
@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "causal"])
def test_dense_with_one_w2_for_every_head_matches_numpy_formula(kinds,
                                                                 causal):
  """Dense(share_w2=True), mesh-tensorflow's layout of W2, alone and mixed
  (where alpha scales the shared W2 per head)."""
  x = x_input()
  shared = synthesizers.Dense(share_w2=True)
  layer = make_layer([shared] + kinds[1:])
  out = harness.run_layer(layer, x, sequence_id=SEQ, causal=causal,
                          var_values=alpha_values(kinds))
  w = weights_of(out, kinds)
  assert w["dense"]["W2"].shape == (harness.KV, harness.N)
  want, _ = reference.layer(x, kinds, w, seq=SEQ, causal=causal)
  np.testing.assert_allclose(out["y"], want, atol=2e-5, rtol=1e-4)
  size = sum(v.size for v in w["dense"].values())
  assert size == shared.num_params(harness.D, H, harness.KV, harness.N)
  with pytest.raises(ValueError, match="Dense.share_w2 must be True"):
    synthesizers.Dense(share_w2="yes")


@pytest.mark.parametrize("kinds", VARIANTS, ids="+".join)
def test_packed_row_equals_examples_alone(kinds):
  """Two examples packed in one row get exactly the output each gets alone."""
  x = x_input(b=1, n=8, seed=1)
  seq = [[1, 1, 1, 2, 2, 2, 2, 2]]
  packed = harness.run_layer(make_layer(kinds), x, sequence_id=seq, causal=True,
                             var_values=alpha_values(kinds))
  w = {k: v for k, v in packed["vars"].items()}
  for start, stop in [(0, 3), (3, 8)]:
    alone = np.zeros_like(x)
    alone[0, :stop - start] = x[0, start:stop]
    pad = [[1] * (stop - start) + [0] * (8 - stop + start)]
    single = harness.run_layer(make_layer(kinds), alone, sequence_id=pad,
                               causal=True, var_values=w)
    np.testing.assert_allclose(packed["y"][0, start:stop],
                               single["y"][0, :stop - start], atol=1e-5)


@pytest.mark.parametrize("seq", [SEQ, [[1] * 5 + [0] * 3, [1] * 8]],
                         ids=["packed", "unpacked"])
@pytest.mark.parametrize("kinds", VARIANTS, ids="+".join)
def test_gather_gradient_equals_tfs_own(kinds, seq, monkeypatch):
  """The hand-written gradient of the per-segment gather (one tf.cond, for
  XLA's memory) equals TF's own gradient of the gather taken every time, on a
  batch with a packed row (the scatter-add) and on an unpacked one (skipped)."""
  x = x_input()
  ours = harness.run_layer(make_layer(kinds), x, sequence_id=seq, grads=True,
                           var_values=alpha_values(kinds))
  monkeypatch.setattr(synthesizers, "_take_last_unless_default",
                      lambda x, index, default: synthesizers._take_last(x, index()))  # pylint: disable=protected-access
  tfs = harness.run_layer(make_layer(kinds), x, sequence_id=seq, grads=True,
                          var_values=ours["vars"])
  np.testing.assert_allclose(ours["y"], tfs["y"], atol=1e-6)
  assert sorted(ours["grads"]) == sorted(tfs["grads"])
  for name, g in ours["grads"].items():
    np.testing.assert_allclose(g, tfs["grads"][name], atol=1e-5, rtol=1e-5,
                               err_msg=name)


@pytest.mark.parametrize("causal", [False, True], ids=["encoder", "causal"])
@pytest.mark.parametrize("kinds", VARIANTS, ids="+".join)
def test_softmax_gradient_equals_mtfs_own(kinds, causal, monkeypatch):
  """The softmax whose gradient reads its output alone (one [batch, heads, N,
  N] buffer less per layer under XLA) gives every gradient mtf.softmax's
  automatic one gives, packed rows and masks included."""
  x = x_input()
  ours = harness.run_layer(make_layer(kinds), x, sequence_id=SEQ,
                           causal=causal, grads=True,
                           var_values=alpha_values(kinds))
  monkeypatch.setattr(attention, "softmax", attention.mtf.softmax)
  mtfs = harness.run_layer(make_layer(kinds), x, sequence_id=SEQ,
                           causal=causal, grads=True, var_values=ours["vars"])
  np.testing.assert_array_equal(ours["y"], mtfs["y"])
  assert sorted(ours["grads"]) == sorted(mtfs["grads"])
  for name, g in ours["grads"].items():
    np.testing.assert_allclose(g, mtfs["grads"][name], atol=1e-5, rtol=1e-5,
                               err_msg=name)


def _scatter_grad(dy, idx):
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  with tf.Graph().as_default(), tf.Session() as sess:
    return sess.run(synthesizers._take_last_grad(  # pylint: disable=protected-access
        tf.constant(dy), tf.constant(idx)))


@pytest.mark.parametrize("dy_shape,idx_shape,limit", [
    ((3, 2, 6), (3, 1, 6), 6),  # one row a scatter: split, squeeze, split
    ((4, 3, 2), (4, 1, 2), 12),  # two leading entries a scatter
    ((2, 3, 2, 4), (2, 1, 1, 4), 8),  # the rows layout, idx [batch, 1, 1, M]
    ((2, 2, 4), (1, 4), 4)])  # idx of lower rank, broadcast over the batch
def test_gather_gradient_split_past_xlas_scatter_limit(dy_shape, idx_shape,
                                                       limit, monkeypatch):
  """XLA compiles no scatter of 2**31 or more indices (length 16384, batch 4);
  past the limit the gradient is one scatter per slice of the leading axes.
  With a tiny limit every path runs; the sum equals NumPy's, index by index."""
  monkeypatch.setattr(synthesizers, "_MAX_SCATTER", limit)
  rng = np.random.RandomState(0)
  dy = rng.randn(*dy_shape).astype(np.float32)
  idx = rng.randint(0, dy_shape[-1], size=idx_shape).astype(np.int32)
  want = np.zeros_like(dy)
  full = np.broadcast_to(idx, dy_shape)
  for pos in np.ndindex(*dy_shape):
    want[pos[:-1] + (full[pos],)] += dy[pos]
  np.testing.assert_allclose(_scatter_grad(dy, idx), want, atol=1e-6)


def test_gather_gradient_row_past_xlas_scatter_limit_is_an_error(monkeypatch):
  monkeypatch.setattr(synthesizers, "_MAX_SCATTER", 5)
  with pytest.raises(ValueError, match="scatter limit.*shorter max_length"):
    _scatter_grad(np.ones((2, 6), np.float32), np.zeros((2, 6), np.int32))


@pytest.mark.parametrize("kinds", [["random", "dense", "dot_product"],
                                   ["factorized_random", "factorized_dense"]],
                         ids="+".join)
def test_mixture_gradients_reach_every_component(kinds):
  out = harness.run_layer(make_layer(kinds), x_input(), sequence_id=SEQ,
                          grads=True, var_values=alpha_values(kinds))
  names = sorted(out["grads"])
  for k in kinds + ["alpha", "/v", "/o"]:
    hit = [n for n in names if k in n]
    assert hit, (k, names)
    for n in hit:
      assert np.abs(out["grads"][n]).max() > 1e-6, n


def test_fixed_random_is_not_trained_but_kept():
  out = harness.run_layer(make_layer(["fixed_random"]), x_input(), grads=True)
  assert any(n.endswith("fixed_random/R") for n in out["vars"])  # checkpointed
  assert not any("fixed_random" in n for n in out["grads"])  # not trainable


def test_alpha_is_a_softmax_per_head():
  """alpha = softmax over functions, per head: with alpha logits +-30 each head
  uses one function alone, head 0 Random, head 1 Dense."""
  kinds = ["random", "dense"]
  a = np.array([[30.0, -30.0], [-30.0, 30.0]], np.float32)
  x = x_input()
  out = harness.run_layer(make_layer(kinds), x,
                          var_values={"alpha": a})
  w = weights_of(out, kinds)
  pos = reference.segment_positions(np.ones((2, 8), int))
  rand = reference.synth_logits("random", x, w["random"], pos)
  dense = reference.synth_logits("dense", x, w["dense"], pos)
  att = reference.softmax(np.concatenate([rand[:, :1], dense[:, 1:]], 1))
  v = np.einsum("bnd,dhk->bhnk", x, w["v"])
  want = np.einsum("bhik,hkd->bid", att @ v, w["o"])
  np.testing.assert_allclose(out["y"], want, atol=1e-5)


def test_default_alpha_is_uniform():
  kinds = ["random", "dense", "dot_product"]
  out = harness.run_layer(make_layer(kinds), x_input())
  a = harness.var(out, "/alpha")
  assert a.shape == (H, 3)
  np.testing.assert_array_equal(a, np.full((H, 3), a[0, 0]))  # softmax: 1/3 each
  assert a[0, 0] == 1.0  # not 0: Adafactor's updates scale with |alpha|


def test_factorized_dense_tiling_gives_n_distinct_pairs():
  a, b = synthesizers.FactorizedDense().factors(12)
  assert (a, b) == (3, 4)
  pairs = {(j % a, j // a) for j in range(a * b)}
  assert len(pairs) == 12


@pytest.mark.parametrize("kinds", VARIANTS, ids="+".join)
def test_bfloat16_activations_close_to_float32(kinds):
  x = x_input()
  f32 = harness.run_layer(make_layer(kinds), x, sequence_id=SEQ, causal=True,
                          var_values=alpha_values(kinds))
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  bf16 = harness.run_layer(make_layer(kinds), x, sequence_id=SEQ, causal=True,
                           var_values=alpha_values(kinds),
                           activation_dtype=tf.bfloat16)
  assert np.isfinite(bf16["y"]).all()
  # logits, mixture and softmax run in float32: what is left is bfloat16's
  # rounding of the projections (measured max 0.015 on |y| <= 3.5)
  np.testing.assert_allclose(bf16["y"], f32["y"], atol=0.03, rtol=0.02)


def test_bfloat16_large_logits_are_mixed_in_float32():
  """Logits of ~+-20, as trained models have: in bfloat16 (8 bits of mantissa)
  each would be off by ~0.1 before the softmax. Measured on D+V's output, as a
  share of its range: 5.8% with the logits in bfloat16 (LOGITS_DTYPE patched),
  1.3% in float32 (0.7% on an earlier machine's CPU); the bound sits between.
  (Random+V does not tell the two apart: 0.7% vs 1.0-1.7%, its logits are a
  parameter, not a bfloat16 matmul's output.)"""
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  x = 4.0 * x_input()
  kinds = ["dense", "dot_product"]
  f32 = harness.run_layer(make_layer(kinds), x, sequence_id=SEQ, causal=True)
  bf16 = harness.run_layer(make_layer(kinds), x, sequence_id=SEQ, causal=True,
                           activation_dtype=tf.bfloat16)
  scale = np.abs(f32["y"]).max()
  assert np.abs(bf16["y"] - f32["y"]).max() < 0.03 * scale


def test_fully_masked_rows_give_no_nan():
  """A padded query whose keys are all masked (causal + segment) stays finite."""
  x = x_input()
  seq = [[0, 1, 1, 1, 1, 1, 1, 1], [2, 1, 1, 1, 1, 1, 1, 1]]
  for kinds in (["random"], ["dense", "dot_product"]):
    out = harness.run_layer(make_layer(kinds), x, sequence_id=seq, causal=True)
    assert np.isfinite(out["y"]).all()


def test_adafactor_second_moments_factored_like_stock_attention():
  """Projections are stored [d_model, heads*d_kv] as mtf's SelfAttention
  stores them, so T5's Adafactor keeps a factored (row + column) second moment
  for them, as for the stock layer, not a full one: with d_kv=32 < 128 a
  [d_model, heads, d_kv] variable would not be factored."""
  from mesh_tensorflow.transformer import transformer_layers  # pylint: disable=g-import-not-at-top
  x = np.random.RandomState(0).randn(2, 4, 128).astype(np.float32)

  def slot_kinds(layer):
    slots = harness.run_layer(layer, x, grads=True,
                              optimizer_slots=True)["slots"]
    kinds = {}
    for name in slots:
      var, kind = name.rsplit("/", 1)[-1].split("_slot_")
      kinds.setdefault(var, set()).add(kind)
    return kinds

  stock = slot_kinds(transformer_layers.SelfAttention(num_heads=4,
                                                      key_value_size=32))
  ours = slot_kinds(SynthesizerAttention(
      synthesizers=["dense", "dot_product"], max_length=4, num_heads=4,
      key_value_size=32))
  for var in ("q", "k", "v", "o"):
    assert stock[var] == {"vr", "vc"}, stock
    assert ours[var] == {"vr", "vc"}, ours
  assert ours["W1"] == {"vr", "vc"}, ours  # Dense's d_model -> heads*d_kv


def test_alpha_init_sets_the_initial_mixture():
  """alpha_init {name: weight}: softmax of the initial alpha per head is those
  weights, the unnamed functions sharing the rest (paper aliases accepted)."""
  kinds = ["random", "dense", "dot_product"]
  out = harness.run_layer(make_layer(kinds, alpha_init={"v": 0.98}),
                          x_input(), sequence_id=SEQ)
  alpha = harness.var(out, "/alpha")  # [heads, functions]
  np.testing.assert_allclose(reference.softmax(alpha, -1),
                             [[0.01, 0.01, 0.98]] * H, rtol=1e-5)
  uniform = harness.var(harness.run_layer(make_layer(kinds), x_input(),
                                          sequence_id=SEQ), "/alpha")
  np.testing.assert_allclose(reference.softmax(uniform, -1), 1 / 3, rtol=1e-6)
