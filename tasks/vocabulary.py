"""The vocabulary of every synth_mtf_local_* task: seqio's bytes by default,
or a SentencePiece model bound to local_vocabulary.sentencepiece_model (and
train_sentencepiece, to make one offline in T5's style)."""

import functools
import json
import subprocess
import sys

import gin
import seqio
import tensorflow.compat.v2 as tf


@gin.configurable
def local_vocabulary(sentencepiece_model=None, extra_ids=None):
  """The vocabulary of every synth_mtf_local_* task (read when the data are,
  after the CLI has parsed gin): seqio's bytes, or `sentencepiece_model` (a
  local or gs:// path) with `extra_ids` sentinels for span corruption (default
  100, as T5's default vocabulary). Bytes take none: T5's sentinels are the
  top ids, bytes that no UTF-8 text holds."""
  if sentencepiece_model is None:
    if extra_ids is not None:
      raise ValueError(
          "local_vocabulary.extra_ids = %r applies to a SentencePiece model "
          "only: bind local_vocabulary.sentencepiece_model too, or unbind "
          "extra_ids (bytes need no sentinels)." % (extra_ids,))
    return _vocabulary(None, 0)
  return _vocabulary(sentencepiece_model,
                     100 if extra_ids is None else extra_ids)


@functools.lru_cache(maxsize=None)
def _vocabulary(sentencepiece_model, extra_ids):
  """One vocabulary object per setting (checked once, loaded lazily)."""
  if sentencepiece_model is None:
    return seqio.ByteVocabulary()
  if not isinstance(sentencepiece_model, str) or not tf.io.gfile.exists(
      sentencepiece_model):
    raise FileNotFoundError(
        "local_vocabulary.sentencepiece_model = %r: no such file. Bind it to "
        "a SentencePiece .model file, or leave it unbound for bytes."
        % (sentencepiece_model,))
  return seqio.SentencePieceVocabulary(sentencepiece_model, extra_ids)


def train_sentencepiece(text_path, model_prefix, vocab_size, **options):
  """Train a SentencePiece model in T5's style (unigram, pad 0, EOS 1, UNK 2,
  no BOS, byte fallback) on a text file, one sentence per line, with every
  sentence (no sampling, one thread: the same file gives the same model).
  `options` go to sentencepiece's trainer. Runs in a fresh Python process:
  in one that has loaded TensorFlow, sentencepiece's trainer crashes
  (measured: SIGSEGV). Returns the .model path."""
  settings = dict(input=text_path, model_prefix=model_prefix,
                  vocab_size=vocab_size, model_type="unigram",
                  character_coverage=1.0, byte_fallback=True, pad_id=0,
                  eos_id=1, unk_id=2, bos_id=-1, input_sentence_size=0,
                  max_sentence_length=1 << 16, num_threads=1, minloglevel=2)
  settings.update(options)
  subprocess.run([sys.executable, "-c", "import json, sys\n"
                  "import sentencepiece as spm\n"
                  "spm.SentencePieceTrainer.train(**json.loads(sys.argv[1]))",
                  json.dumps(settings)], check=True)
  return model_prefix + ".model"


class LocalVocabulary(seqio.Vocabulary):
  """Stands in the tasks' features for local_vocabulary(), which it asks on
  every use: the tasks are registered at import, before gin is parsed."""

  def __init__(self):
    super().__init__(extra_ids=0)

  @property
  def vocabulary(self):
    return local_vocabulary()

  @property
  def extra_ids(self):
    return self.vocabulary.extra_ids

  @property
  def eos_id(self):
    return self.vocabulary.eos_id

  @property
  def unk_id(self):
    return self.vocabulary.unk_id

  @property
  def pad_id(self):
    return self.vocabulary.pad_id

  @property
  def _base_vocab_size(self):
    return self.vocabulary.vocab_size - self.vocabulary.extra_ids

  def _encode(self, s):
    return self.vocabulary.encode(s)

  def _decode(self, ids):
    return self.vocabulary.decode(ids)

  def _encode_tf(self, s):
    return self.vocabulary.encode_tf(s)

  def _decode_tf(self, ids):
    return self.vocabulary.decode_tf(ids)

  def __eq__(self, other):
    return isinstance(other, LocalVocabulary) or self.vocabulary == other

  def __hash__(self):
    return hash(LocalVocabulary)


VOCAB = LocalVocabulary()
