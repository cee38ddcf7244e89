"""Where mesh-tensorflow's own `Synthesizer` layer (the authors' release) and ours
differ, shown on the same inputs. Each test would fail if the stock layer were
right on that point (then the difference would be gone and the note outdated)."""

import gin
import numpy as np
from mesh_tensorflow.transformer import attention as mtf_attention
from mesh_tensorflow.transformer import transformer_layers

import harness
from harness import make_layer


def stock_random(**kw):
  return transformer_layers.Synthesizer(
      synthesize_mode="random", num_heads=2, key_value_size=4, **kw)


def packed_vs_alone(layer_fn):
  """max |packed - alone| over the second example of a packed row."""
  x = np.random.RandomState(1).randn(1, 8, 8).astype(np.float32)
  packed = harness.run_layer(layer_fn(), x,
                             sequence_id=[[1, 1, 1, 2, 2, 2, 2, 2]], causal=True)
  alone = np.zeros_like(x)
  alone[0, :5] = x[0, 3:]
  single = harness.run_layer(layer_fn(), alone, sequence_id=[[1] * 5 + [0] * 3],
                             causal=True, var_values=dict(packed["vars"]))
  return np.abs(packed["y"][0, 3:] - single["y"][0, :5]).max()


def test_packing_stock_uses_absolute_rows_we_use_segment_positions():
  assert mtf_attention.synthetic_attention  # the release's function exists
  assert packed_vs_alone(stock_random) > 1e-3  # stock: wrong rows of R
  assert packed_vs_alone(lambda: make_layer(["random"])) < 1e-5  # ours


def test_decode_state_stock_caches_keys_for_pure_random():
  tokens = np.random.RandomState(0).randint(1, 11, size=(2, 8))
  _, _, stock_states = harness.lm_full_vs_incremental(stock_random, tokens)
  _, _, our_states = harness.lm_full_vs_incremental(
      lambda: make_layer(["random"]), tokens)
  assert len(stock_states) == 2  # keys and values, although R needs no keys
  assert len(our_states) == 1  # values only: half the decode state
  assert sum(our_states) * 2 == sum(stock_states)


def test_stock_ignores_t5_num_heads_binding():
  """T5 binds SelfAttention.num_heads = %num_heads; the stock layer passes its own
  default (8) explicitly, so the binding never reaches it. Ours follows it."""
  with gin.unlock_config():
    gin.bind_parameter("SelfAttention.num_heads", 3)
    gin.bind_parameter("SelfAttention.key_value_size", 5)
  try:
    stock = transformer_layers.Synthesizer()
    from synth_mtf.attention import SynthesizerAttention  # pylint: disable=g-import-not-at-top
    ours = SynthesizerAttention()
  finally:
    gin.clear_config()
  assert (stock.num_heads, stock.key_value_size) == (8, 128)
  assert (ours.num_heads, ours.key_value_size) == (3, 5)
