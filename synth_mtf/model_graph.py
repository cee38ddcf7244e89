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


def parse(gin_files, bindings=()):
  """Clear gin, then parse mtf's defaults.gin + gin_files + bindings."""
  import t5.models.mesh_transformer  # noqa: F401  pylint: disable=g-import-not-at-top
  gin.clear_config(clear_constants=True)
  for path in gin_search_paths():
    gin.add_config_file_search_path(path)
  gin.parse_config_files_and_bindings(["defaults.gin"] + list(gin_files),
                                      list(bindings), finalize_config=False)


def model_type():
  try:
    return gin.query_parameter("utils.run.model_type")
  except ValueError:
    return "bitransformer"


def build_variables(gin_files, bindings=(), length=8, vocab=64):
  """{variable name: (shape list, trainable)} of the model the configs define."""
  parse(gin_files, bindings)
  kind = model_type()
  graph = tf.Graph()
  with graph.as_default():
    mtf_graph = mtf.Graph()
    mesh = mtf.Mesh(mtf_graph, "mesh")
    model = mtf_utils.build_model(model_type=kind, input_vocab_size=vocab,
                                  output_vocab_size=vocab)
    batch = mtf.Dimension("batch", 2)
    length_dim = mtf.Dimension("length", length)
    ids = mtf.ones(mesh, mtf.Shape([batch, length_dim]), tf.int32)
    vdt = mtf.VariableDType(tf.float32, tf.float32, tf.float32)
    if kind == "bitransformer":
      model.call_simple(inputs=ids, targets=ids, compute_loss=True,
                        mode=tf.estimator.ModeKeys.TRAIN, variable_dtype=vdt)
    else:
      model.call_simple(inputs=transformer.autoregressive_inputs(ids),
                        targets=ids, compute_loss=True,
                        mode=tf.estimator.ModeKeys.TRAIN, variable_dtype=vdt)
    return {v.name: (v.shape.to_integer_list, v.trainable)
            for v in mtf_graph.all_variables}
