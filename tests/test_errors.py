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
    # on a trained model the fix that works is a shorter decode: named first
    with pytest.raises(ValueError, match=r"Decode length 8 \(Bitransformer"
                       r".decode.max_decode_length.*max_length=4.*Bind "
                       r"--gin_param=\"Bitransformer.decode.max_decode_length "
                       r"= 4\".*Raising max_length instead"):
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


@pytest.mark.parametrize("name,value", [("a", 0), ("b", 0), ("a", -4),
                                        ("b", 2.5)])
def test_factorized_sizes_must_be_positive_integers(name, value):
  """a = 0 was a raw ZeroDivisionError when b is derived from it."""
  with pytest.raises(ValueError, match=r"FactorizedDense\.%s must be a positive "
                     r"integer.*got %s\." % (name, value)):
    synthesizers.FactorizedDense(**{name: value})


def test_factorized_size_left_unset_is_reported_as_computed():
  """a = 5 with max_length 32: the layer derives b = 32 // 5 = 6, and says so
  (not b=None, a*b=0)."""
  a, n = 5, 32
  b = n // a
  with pytest.raises(ValueError, match=r"got a=%d, b=%d and max_length=%d "
                     r"\(a\*b=%d, b = max_length // a\)" % (a, b, n, a * b)):
    SynthesizerAttention(synthesizers=[synthesizers.FactorizedDense(a=a)],
                         max_length=n)
  with pytest.raises(ValueError, match=r"got a=%d, b=%d .*a = max_length // b"
                     % (n // 5, 5)):
    SynthesizerAttention(synthesizers=[synthesizers.FactorizedDense(b=5)],
                         max_length=n)


def test_factorized_zero_size_from_gin():
  with pytest.raises(ValueError, match=r"FactorizedDense\.a must be a positive "
                     r"integer"):
    build("SynthesizerAttention.synthesizers = ['factorized_dense']",
          "FactorizedDense.a = 0", "SynthesizerAttention.max_length = 8")


def test_params_with_a_missing_gin_file_is_an_error_not_a_traceback(capsys):
  from synth_mtf import cli  # pylint: disable=g-import-not-at-top
  with pytest.raises(SystemExit) as e:
    cli.main(["params", "--gin_file", "models/t5.1.1.tiny.gin",
              "--gin_file", "models/synthesizer/nope.gin"])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert "synth-mtf params: error: Unable to open file: " \
         "models/synthesizer/nope.gin" in err
  assert "Fix --gin_file" in err and "Traceback" not in err


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


def test_layout_that_splits_heads_unevenly():
  from synth_mtf.guards import check_heads_layout  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match=r"num_heads=3 is split over mesh "
                     r"dimension 'model' of size 2.*remove 'heads:model'"):
    check_heads_layout(3, "batch:batch,heads:model", "model:2,batch:2")
  check_heads_layout(4, "batch:batch,heads:model", "model:2,batch:2")  # fine
  check_heads_layout(3, "batch:batch", "model:2,batch:2")  # heads not split


def test_layout_error_from_gin_bindings():
  with pytest.raises(ValueError, match="num_heads=3 is split"):
    build("num_heads = 3", "utils.run.layout_rules = 'heads:model'",
          "utils.run.mesh_shape = 'model:2'",
          "SynthesizerAttention.max_length = 8")


def test_the_mtf_model_fn_the_init_checkpoint_guard_reads_is_there():
  """The init_checkpoint guard reads the locals of mesh-tensorflow's estimator
  model_fn: pinned here to the mesh-tensorflow installed, so that a version
  that renames it or its variables fails this test, not silently the guard."""
  import inspect  # pylint: disable=g-import-not-at-top
  import types  # pylint: disable=g-import-not-at-top
  from mesh_tensorflow.transformer import utils as mtf_utils  # pylint: disable=g-import-not-at-top
  from synth_mtf import guards  # pylint: disable=g-import-not-at-top
  module, name = guards.MTF_MODEL_FN
  assert mtf_utils.__name__ == module
  returns_it = inspect.unwrap(mtf_utils.tpu_estimator_model_fn)  # gin wraps it
  model_fn, = [c for c in returns_it.__code__.co_consts
               if isinstance(c, types.CodeType) and c.co_name == name]
  names = set(model_fn.co_varnames + model_fn.co_freevars)
  assert {"init_checkpoint", "mode", "model_dir",
          "init_variable_filter"} <= names


def call_as(module, function, callee):
  """callee() called from a function named `function` of module `module`
  (its frame's globals and code name, as a stack walk sees them)."""
  namespace = {"__name__": module, "callee": callee}
  exec("def %s():\n  init_checkpoint = 'ckpt'\n  return callee()\n"  # pylint: disable=exec-used
       % function, namespace)
  return lambda: namespace[function]()


def test_a_renamed_mtf_model_fn_stops_the_build_instead_of_the_guard():
  """Built by an estimator inside mtf's utils but not inside the model_fn the
  guard knows, the layer says so, rather than skipping the init_checkpoint
  check without a word."""
  from synth_mtf import guards  # pylint: disable=g-import-not-at-top
  module, name = guards.MTF_MODEL_FN
  estimator = "tensorflow_estimator.python.estimator.estimator"
  found = call_as(estimator, "_call_model_fn",
                  call_as(module, name, guards.estimator_model_fn_locals))
  assert found()["init_checkpoint"] == "ckpt"
  renamed = call_as(estimator, "_call_model_fn",
                    call_as(module, "model_fn",
                            guards.estimator_model_fn_locals))
  with pytest.raises(RuntimeError, match=r"built by mesh-tensorflow's "
                     r"estimator \(in mesh_tensorflow.transformer.utils."
                     r"model_fn.*renamed or moved it.*MTF_MODEL_FN"):
    renamed()
  # another estimator's model_fn, or no estimator: nothing to check
  assert call_as(estimator, "_call_model_fn", call_as(
      "my_project", "model_fn", guards.estimator_model_fn_locals))() == {}
  assert guards.estimator_model_fn_locals() == {}


def test_synthesizers_refuse_cross_attention():
  from synth_mtf.attention import SynthesizerEncDecAttention  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match=r"\['dense'\]\): synthesizers cannot "
                     r"replace encoder-decoder attention.*EncDecAttention"):
    SynthesizerEncDecAttention(synthesizers=["dense"])
  with pytest.raises(ValueError, match="cannot replace encoder-decoder"):
    build("decoder/transformer.make_layer_stack.layers = ["
          "@synth_mtf.attention.SynthesizerAttention, "
          "@synth_mtf.attention.SynthesizerEncDecAttention, "
          "@transformer_layers.DenseReluDense]",
          "SynthesizerEncDecAttention.synthesizers = ['factorized_dense']",
          "SynthesizerAttention.max_length = 8")


def save_checkpoint(path, shapes):
  """A TF checkpoint (model.ckpt-3) holding variables {name: shape}."""
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  with tf.Graph().as_default():
    for name, shape in shapes.items():
      tf.get_variable(name, shape)
    with tf.Session() as s:
      s.run(tf.global_variables_initializer())
      tf.train.Saver().save(s, str(path / "model.ckpt"), global_step=3)


def check_layer_against(path, scope, shapes):
  """Build mtf variables {name under scope: shape} and run the build-time
  check of scope's layer against path's checkpoint."""
  import mesh_tensorflow as mtf  # pylint: disable=g-import-not-at-top
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  from synth_mtf import guards  # pylint: disable=g-import-not-at-top
  with tf.Graph().as_default():
    graph = mtf.Graph()
    mesh = mtf.Mesh(graph, "m")
    with tf.variable_scope(scope):
      for name, dims in shapes.items():
        mtf.get_variable(mesh, name, mtf.Shape(
            [mtf.Dimension("a%d" % i, n) for i, n in enumerate(dims)]))
    guards.check_against_checkpoint(graph, scope, str(path))


def test_checkpoint_of_another_variant_unit(tmp_path):
  """The build-time check, without the CLI: a Random checkpoint, a Dense layer."""
  scope = "enc/layer/SynthesizerAttention"
  save_checkpoint(tmp_path, {scope + "/random/R": [2, 8, 8],
                             scope + "/v": [8, 2, 4]})
  with pytest.raises(ValueError, match=r"holds a checkpoint \(model.ckpt-3\) "
                     r"written by a different model.*random/R"):
    check_layer_against(tmp_path, scope, {"dense/W1": [8, 2, 4],
                                          "v": [8, 2, 4]})


def test_checkpoint_error_shows_shapes_that_differ(tmp_path):
  """Same names, another max_length: the shapes are what differs."""
  scope = "enc/layer/SynthesizerAttention"
  save_checkpoint(tmp_path, {scope + "/random/R": [2, 8, 8]})
  with pytest.raises(ValueError, match=r"Shapes differ: random/R: \[2, 4, 4\] "
                     r"here, \[2, 8, 8\] in the checkpoint"):
    check_layer_against(tmp_path, scope, {"random/R": [2, 4, 4]})


@pytest.mark.parametrize("kinds,alpha_init,match", [
    (["random"], {"dot_product": 0.9}, "is for mixtures"),
    (["random", "dense"], {"dot_product": 0.9}, "unknown: \\['dot_product'\\]"),
    (["random", "dot_product"], {"v": 1.0}, "in \\(0, 1\\)"),
    (["random", "dot_product"], {"r": 0.5, "v": 0.4}, "summing to 1"),
    (["random", "dot_product"], {"r": 0.3, "random": 0.6},
     "names random twice"),
    (["random", "dot_product"], {"dense": 0.3}, "unknown: \\['dense'\\]"),
    (["random", "dot_product"], {"banana": 0.3}, "unknown: \\['banana'\\]"),
])
def test_bad_alpha_init(kinds, alpha_init, match):
  with pytest.raises(ValueError, match=r"SynthesizerAttention.alpha_init=.*"
                     + match):
    SynthesizerAttention(synthesizers=kinds, alpha_init=alpha_init)


def test_contextual_relative_attention_is_refused():
  with pytest.raises(ValueError, match=r"relative_attention_type='contextual'"
                     r" is not supported.*'bias_shared'"):
    build("SynthesizerAttention.relative_attention_type = 'contextual'",
          "SynthesizerAttention.max_length = 8")
