"""The stock t5_mesh_transformer CLI, offline: T5's registered tasks on mock data.

  python tests/offline_t5.py --offline_spm=SPM.model [t5_mesh_transformer flags]

Runs T5's own `mesh_transformer_main.main` (the CLI's entry point: same flags,
gin files, preprocessors, postprocessors and metrics) after substitutions
that only a machine without GCS needs, kept here in test code:
  - T5's default SentencePiece vocabulary (gs://t5-data) -> a model trained
    locally (`train_spm`); the vocabulary objects load their file lazily, so
    pointing them elsewhere after import is enough;
  - TFDS data -> `tfds.testing.mock_data` (random examples of each dataset's
    features), whose builders have no split metadata: sources without explicit
    splits get train/validation/test;
  - the example counts that proportional mixtures weigh their tasks by
    (`TfdsDataSource.num_input_examples`) -> a fixed number;
  - SuperGLUE WSC's random mock examples -> one consistent sentence (its
    preprocessor checks that the pronoun is where the indices say).
The real configs and registrations are untouched: a user with GCS runs the
same command with `t5_mesh_transformer` instead of this file.
"""

import contextlib
import os
import sys

from absl import app
from absl import flags

flags.DEFINE_string("offline_spm", None, "local SentencePiece model standing "
                    "in for T5's default vocabulary")
flags.DEFINE_integer("mock_examples", 8, "examples per mocked TFDS split")

SPLITS = {"train": "train", "validation": "validation", "test": "test"}


def train_spm(path_prefix, vocab_size=320):
  """A small SentencePiece model in T5's style (pad 0, EOS 1, UNK 2), trained
  on generated English-like text; byte fallback encodes any other text (tfds'
  mock strings are random). Returns the .model path."""
  import random  # pylint: disable=g-import-not-at-top
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  rng = random.Random(0)
  words = ("the a of to and in is was for on that with as by it not this be "
           "are from at or an have his her but which one all were been they "
           "entailment contradiction neutral positive negative true false "
           "acceptable unacceptable question sentence premise hypothesis "
           "mnli rte cola sst2 mrpc qqp qnli stsb wnli boolq cb copa multirc "
           "record wic wsc axb axg passage choice1 choice2 word answer "
           "span1 span2 text idx label summarize stsb cause effect").split()
  text = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 20)))
          for _ in range(2000)]
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(text), model_prefix=path_prefix,
      vocab_size=vocab_size, model_type="unigram", character_coverage=1.0,
      byte_fallback=True, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
      minloglevel=2)
  return path_prefix + ".model"


def go_offline(spm_path, num_examples):
  import seqio  # pylint: disable=g-import-not-at-top
  import synth_mtf  # noqa: F401  (T5's registries and ours)  pylint: disable=g-import-not-at-top,unused-import
  # t5.data's star imports shadow its `utils` attribute with seqio's
  t5_spm = sys.modules["t5.data.utils"].DEFAULT_SPM_PATH
  for name in seqio.TaskRegistry.names():
    task = seqio.TaskRegistry.get(name)
    for feature in task.output_features.values():
      vocab = feature.vocabulary
      if (isinstance(vocab, seqio.SentencePieceVocabulary) and
          vocab.sentencepiece_model_file == t5_spm):
        vocab._sentencepiece_model_file = spm_path  # pylint: disable=protected-access
        vocab._model = None  # pylint: disable=protected-access
    source = task.source
    if isinstance(source, seqio.TfdsDataSource):
      if not source._splits:  # pylint: disable=protected-access
        source._splits = dict(SPLITS)  # pylint: disable=protected-access
      if "wsc" in (source.tfds_dataset.name or ""):
        source.get_dataset = _consistent_wsc(source.get_dataset)
  seqio.TfdsDataSource.num_input_examples = lambda self, split: num_examples


def _consistent_wsc(get_dataset):
  """SuperGLUE WSC's preprocessor asserts that span2_text is the word at
  span2_index of the text, which random examples never are: give each mock
  example one consistent sentence."""
  import tensorflow.compat.v2 as tf  # pylint: disable=g-import-not-at-top

  def fix(ex):
    index = lambda i: tf.cast(i, ex["span2_index"].dtype)
    return dict(ex, text=tf.constant("the cat saw a dog"),
                span1_index=index(1), span1_text=tf.constant("cat"),
                span2_index=index(3), span2_text=tf.constant("a"))

  return lambda *args, **kwargs: get_dataset(*args, **kwargs).map(fix)


def log_likelihoods(model_dir, inputs, targets, lengths=(64, 16)):
  """log p(targets | inputs) per example under model_dir's latest checkpoint,
  from the logits of the model its operative_config.gin builds (teacher
  forcing, sum over the target tokens and EOS): the reference that T5's
  scoring is compared with. Call inside `offline(...)`, TF1 graph mode."""
  import gin  # pylint: disable=g-import-not-at-top
  import mesh_tensorflow as mtf  # pylint: disable=g-import-not-at-top
  from mesh_tensorflow.transformer import utils as mtf_utils  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import seqio  # pylint: disable=g-import-not-at-top
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  from synth_mtf import model_graph  # pylint: disable=g-import-not-at-top
  model_graph.parse([], [])
  gin.parse_config_file(os.path.join(model_dir, "operative_config.gin"),
                        skip_unknown=True)
  vocab = seqio.get_mixture_or_task(gin.query_parameter(
      "%MIXTURE_NAME")).output_features["targets"].vocabulary

  def ids(texts, n):
    rows = [list(vocab.encode(t)) + [1] for t in texts]
    return np.array([r + [0] * (n - len(r)) for r in rows], np.int32)

  x, y = ids(inputs, lengths[0]), ids(targets, lengths[1])
  ckpt = tf.train.latest_checkpoint(model_dir)
  reader = tf.train.load_checkpoint(ckpt)
  saved = reader.get_variable_to_shape_map()
  master = reader.get_variable_to_dtype_map()["shared/embedding"]
  with tf.Graph().as_default():
    mesh = mtf.Mesh(mtf.Graph(), "mesh")
    feed = lambda a: mtf.import_tf_tensor(mesh, tf.constant(a), mtf.Shape(
        [mtf.Dimension("batch", a.shape[0]),
         mtf.Dimension("length", a.shape[1])]))
    model = mtf_utils.build_model("bitransformer",
                                  input_vocab_size=vocab.vocab_size,
                                  output_vocab_size=vocab.vocab_size)
    logits, _ = model.call_simple(
        inputs=feed(x), targets=feed(y), compute_loss=False,
        mode=tf.estimator.ModeKeys.EVAL,
        variable_dtype=mtf.VariableDType(master, tf.float32, tf.float32))
    lowering = mtf.Lowering(mesh.graph, {
        mesh: mtf.placement_mesh_impl.PlacementMeshImpl([], [], [""])})
    out = lowering.export_to_tf_tensor(logits)
    saver = tf.train.Saver({v.op.name: v for v in tf.global_variables()
                            if v.op.name in saved})
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      saver.restore(sess, ckpt)
      sess.run(lowering.copy_masters_to_slices())
      z = sess.run(out).astype(np.float64)
  top = z.max(-1, keepdims=True)
  logp = z - top - np.log(np.exp(z - top).sum(-1, keepdims=True))
  picked = np.take_along_axis(logp, y[..., None], -1)[..., 0]
  return (picked * (y > 0)).sum(-1).tolist()


@contextlib.contextmanager
def offline(spm_path, num_examples=8):
  """T5's registries and TFDS offline (see the module docstring)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  if not spm_path or not os.path.exists(spm_path):
    raise app.UsageError("--offline_spm must name a SentencePiece model file "
                         "(train one with tests/offline_t5.train_spm)")
  go_offline(spm_path, num_examples)
  with tfds.testing.mock_data(num_examples=num_examples):
    yield


def main(argv):
  from t5.models import mesh_transformer_main  # pylint: disable=g-import-not-at-top
  with offline(flags.FLAGS.offline_spm, flags.FLAGS.mock_examples):
    mesh_transformer_main.main(argv)


if __name__ == "__main__":
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  from t5.models import mesh_transformer_main as _  # noqa: F401  (its flags)  pylint: disable=g-import-not-at-top
  tf.disable_v2_behavior()  # as the CLI's console_entry_point
  tf.logging.set_verbosity(tf.logging.INFO)
  app.run(main, argv=sys.argv)
