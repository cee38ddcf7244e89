"""Every bad input fails with a message that names the problem and the fix."""

import gin
import numpy as np
import pytest

import harness
from synth_mtf import model_graph
from synth_mtf import synthesizers
from synth_mtf.attention import SynthesizerAttention


@pytest.fixture(autouse=True)
def _clear_gin():
  yield
  gin.clear_config(clear_constants=True)


def build(*bindings):
  return model_graph.build_variables(
      ["models/t5.1.1.tiny.gin", "models/synthesizer/random.gin"], bindings)


def test_unknown_synthesizer_in_gin():
  with pytest.raises(ValueError, match=r"Unknown synthesizer 'randum'.*"
                     r"'dense'.*'random'"):
    build("SynthesizerAttention.synthesizers = ['randum']",
          "SynthesizerAttention.max_length = 8")


def test_misspelled_gin_binding_of_ours():
  with pytest.raises(ValueError, match="max_lenght"):
    build("SynthesizerAttention.max_lenght = 8")


def test_sequence_longer_than_max_length():
  with pytest.raises(ValueError, match=r"Sequence length 8 exceeds "
                     r"SynthesizerAttention.max_length=4.*"
                     r"SynthesizerAttention.max_length = 8"):
    build("SynthesizerAttention.max_length = 4")


def test_decode_longer_than_max_length():
  """One incremental step with a decode length (8) above max_length (4)."""
  import mesh_tensorflow as mtf  # pylint: disable=g-import-not-at-top
  from mesh_tensorflow.transformer import transformer  # pylint: disable=g-import-not-at-top
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  layer = SynthesizerAttention(synthesizers=["random"], max_length=4,
                               num_heads=2, key_value_size=4)
  with tf.Graph().as_default():
    mesh = mtf.Mesh(mtf.Graph(), "mesh")
    batch, length = mtf.Dimension("batch", 1), mtf.Dimension("length", 8)
    x = mtf.zeros(mesh, mtf.Shape([batch, mtf.Dimension("d_model", 8)]))
    state = mtf.zeros(mesh, mtf.Shape([batch, mtf.Dimension("heads", 2),
                                       mtf.Dimension("memory_length", 8),
                                       mtf.Dimension("d_kv", 4)]))
    context = transformer.Context(
        model=harness.fake_model(8, True), mesh=mesh, batch_dims=[batch],
        length_dim=length, variable_dtype=mtf.VariableDType(tf.float32),
        mode="incremental", position=mtf.constant(mesh, 0, dtype=tf.int32),
        states=[state], new_states=[])
    with pytest.raises(ValueError, match=r"Decode length 8 \(Bitransformer"
                       r".decode.max_decode_length.*max_length=4"):
      layer.call(context, x)


def test_dot_product_alone_has_no_length_limit():
  out = harness.run_layer(SynthesizerAttention(
      synthesizers=["dot_product"], max_length=2, num_heads=2,
      key_value_size=4), np.ones((1, 6, 8), np.float32))
  assert out["y"].shape == (1, 6, 8)


def test_factorized_sizes_must_multiply_to_max_length():
  with pytest.raises(ValueError, match=r"a\*b == max_length, got a=3, b=5 and "
                     r"max_length=16"):
    SynthesizerAttention(synthesizers=[synthesizers.FactorizedDense(a=3, b=5)],
                         max_length=16)


def test_factorized_sizes_from_gin():
  with pytest.raises(ValueError, match="FactorizedDense.a and FactorizedDense.b"):
    build("SynthesizerAttention.synthesizers = ['factorized_dense']",
          "FactorizedDense.a = 3", "SynthesizerAttention.max_length = 8")


def test_empty_mixture():
  with pytest.raises(ValueError, match="synthesizers is empty"):
    SynthesizerAttention(synthesizers=[])


def test_duplicate_component():
  with pytest.raises(ValueError, match="may appear once per layer"):
    SynthesizerAttention(synthesizers=["random", "r"])


def test_bad_max_length():
  with pytest.raises(ValueError, match="max_length must be a positive integer"):
    SynthesizerAttention(max_length=0)


def test_bad_factorized_random_k():
  with pytest.raises(ValueError, match="FactorizedRandom.k must be >= 1"):
    synthesizers.FactorizedRandom(k=0)


def test_multi_query_not_supported():
  with pytest.raises(ValueError, match="num_memory_heads"):
    build("SelfAttention.num_memory_heads = 1",
          "SynthesizerAttention.max_length = 8")
