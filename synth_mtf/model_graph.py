"""Build a model from gin configs the way the stock CLI does, without training.

Used by the tests (proof that a config selects the variant it names) and by
`synth-mtf params` (Table 1 parameter counts for a real config).
"""

import os

import gin
import mesh_tensorflow as mtf
from mesh_tensorflow.transformer import transformer
from mesh_tensorflow.transformer import utils as mtf_utils
import tensorflow.compat.v1 as tf

import synth_mtf


def gin_search_paths():
  import t5.models  # pylint: disable=g-import-not-at-top
  return [os.path.join(os.path.dirname(mtf_utils.__file__), "gin"),
          os.path.join(os.path.dirname(t5.models.__file__), "gin"),
          synth_mtf.GIN_DIR]


def parse(gin_files, bindings=(), skip_unknown=False):
  """Clear gin, then parse mtf's defaults.gin + gin_files + bindings.
  skip_unknown: as gin's (the CLI skips T5's deprecated references)."""
  import t5.models.mesh_transformer  # noqa: F401  pylint: disable=g-import-not-at-top
  gin.clear_config(clear_constants=True)
  for path in gin_search_paths():
    gin.add_config_file_search_path(path)
  gin.parse_config_files_and_bindings(["defaults.gin"] + list(gin_files),
                                      list(bindings), finalize_config=False,
                                      skip_unknown=skip_unknown)


def model_type():
  try:
    return gin.query_parameter("utils.run.model_type")
  except ValueError:
    return "bitransformer"


def call_model(ids, vocab, mode, variable_dtype, compute_loss=True):
  """Build the gin-configured model in ids' mesh and call it on ids.

  ids: int32 [batch, length] used as inputs and targets (a Bitransformer) or as
  the targets of a decoder-only model (shifted to make its inputs).
  Returns (model, loss or None).
  """
  kind = model_type()
  model = mtf_utils.build_model(model_type=kind, input_vocab_size=vocab,
                                output_vocab_size=vocab)
  inputs = ids if kind == "bitransformer" else (
      transformer.autoregressive_inputs(ids))
  _, loss = model.call_simple(inputs=inputs, targets=ids,
                              compute_loss=compute_loss, mode=mode,
                              variable_dtype=variable_dtype)
  return model, loss


def build_variables(gin_files, bindings=(), length=8, vocab=64):
  """{variable name: (shape list, trainable)} of the model the configs define."""
  parse(gin_files, bindings)
  graph = tf.Graph()
  with graph.as_default():
    mtf_graph = mtf.Graph()
    mesh = mtf.Mesh(mtf_graph, "mesh")
    ids = mtf.ones(mesh, mtf.Shape([mtf.Dimension("batch", 2),
                                    mtf.Dimension("length", length)]), tf.int32)
    call_model(ids, vocab, tf.estimator.ModeKeys.TRAIN,
               mtf.VariableDType(tf.float32, tf.float32, tf.float32))
    return {v.name: (v.shape.to_integer_list, v.trainable)
            for v in mtf_graph.all_variables}
