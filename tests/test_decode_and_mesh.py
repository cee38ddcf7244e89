"""Incremental decoding == full pass; one-device mesh == multi-processor mesh."""

import numpy as np
import pytest

import harness
from synth_mtf.attention import SynthesizerAttention
from harness import SEQ, VARIANTS, alpha_values, make_layer, x_input  # pylint: disable=g-multiple-import

PURE = {"random", "fixed_random", "factorized_random", "dense",
        "factorized_dense"}


@pytest.mark.parametrize("kinds", VARIANTS, ids="+".join)
def test_incremental_decode_equals_full_pass(kinds):
  tokens = np.random.RandomState(0).randint(1, 11, size=(2, 8))
  full, inc, states = harness.lm_full_vs_incremental(
      lambda: SynthesizerAttention(synthesizers=kinds, max_length=8,
                                   num_heads=2, key_value_size=4), tokens)
  np.testing.assert_allclose(inc, full, atol=2e-5, rtol=1e-4)
  # decode state per layer: values only for pure synthesizers, keys+values else
  want = 1 if set(kinds) <= PURE else 2
  assert len(states) == want
  assert all(s == 2 * 2 * 8 * 4 for s in states)  # batch*heads*length*d_kv


@pytest.mark.parametrize("mesh", ["", "b:2,m:2"])
@pytest.mark.parametrize("kinds", [["random"], ["factorized_random"],
                                   ["random", "dot_product"]], ids="+".join)
def test_incremental_decode_per_example_positions(kinds, mesh):
  """What sample_autoregressive does: a [batch] decode position; on one device
  and with batch and heads split 2 ways (Random's row is taken per processor)."""
  tokens = np.random.RandomState(1).randint(1, 11, size=(2, 8))
  full, inc, _ = harness.lm_full_vs_incremental(
      lambda: SynthesizerAttention(synthesizers=kinds, max_length=8,
                                   num_heads=2, key_value_size=4), tokens,
      batch_positions=True, mesh_shape=mesh,
      layout="batch:b,heads:m" if mesh else "")
  np.testing.assert_allclose(inc, full, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("kinds", [["random"], ["factorized_random"], ["dense"],
                                   ["factorized_dense"],
                                   ["random", "dense", "dot_product"]],
                         ids="+".join)
def test_multiprocessor_mesh_equals_one_device(kinds):
  """batch split 2 ways and heads split 2 ways: same outputs and gradients."""
  x = x_input()
  one = harness.run_layer(make_layer(kinds), x, sequence_id=SEQ, causal=True,
                          grads=True, var_values=alpha_values(kinds))
  values = {k: v for k, v in one["vars"].items()}
  four = harness.run_layer(make_layer(kinds), x, sequence_id=SEQ, causal=True,
                           grads=True, var_values=values,
                           mesh_shape="b:2,m:2", layout="batch:b,heads:m")
  np.testing.assert_allclose(four["y"], one["y"], atol=1e-5)
  assert sorted(four["grads"]) == sorted(one["grads"])
  for name, g in one["grads"].items():
    np.testing.assert_allclose(four["grads"][name], g, atol=1e-5, err_msg=name)


def test_heads_split_mesh_actually_splits():
  """Guard for the test above: the layout really places heads on 2 processors."""
  import mesh_tensorflow as mtf  # pylint: disable=g-import-not-at-top
  impl = harness.make_mesh_impl("b:2,m:2", "batch:b,heads:m")
  shape = mtf.Shape([mtf.Dimension("heads", 2), mtf.Dimension("max_length", 8)])
  assert impl.slice_shape(shape) == [1, 8]
