"""seqio registrations the paper's experiments need and T5 0.9.4 lacks.

Against their TFDS names, with T5's default SentencePiece vocabulary, as a T5 user
with GCS access runs them. (The tests exercise them offline with
tfds.testing.mock_data.) T5 already has WMT (wmt14_ende_v003, wmt14_enfr_v003),
CNN/DailyMail (cnn_dailymail_v002), C4 span corruption (c4_v220_span_corruption),
GLUE/SuperGLUE and the en_mix mixture; the experiment configs use those.

  synth_mtf_ag_news  AG News topic classification (Table 7): 4 labels
  synth_mtf_imdb     IMDB movie reviews sentiment (Table 7): 2 labels
  synth_mtf_lm1b     One Billion Word language modelling (Table 2), targets only

PersonaChat (Table 3) has no TFDS source: synth_mtf_personachat in local_files.py
reads it from TSV files.
"""

import functools

import seqio
from t5.data import preprocessors as t5_preprocessors
from t5.data.utils import get_default_vocabulary
from t5.evaluation import metrics
import tensorflow.compat.v2 as tf

from synth_mtf.tasks.features import features

VOCAB = get_default_vocabulary()  # T5 default SentencePiece (GCS)
FEATURES = features(VOCAB)
AG_NEWS_LABELS = ("World", "Sports", "Business", "Sci/Tech")
IMDB_LABELS = ("negative", "positive")


def classification(dataset, prefix, text_keys, label_names):
  """{text..., label} -> {"inputs": "<prefix>: <text>", "targets": label name}."""
  names = tf.constant(list(label_names))

  def fn(ex):
    text = tf.strings.reduce_join([ex[k] for k in text_keys], separator=" ")
    return {"inputs": tf.strings.join([prefix + ": ", text]),
            "targets": tf.gather(names, ex["label"])}

  return dataset.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


def text_to_targets(dataset, key="text"):
  return dataset.map(lambda ex: {"targets": ex[key]},
                     num_parallel_calls=tf.data.AUTOTUNE)


def _add(name, **kwargs):
  if name not in seqio.TaskRegistry.names():
    seqio.TaskRegistry.add(name, **kwargs)


SPLITS = {"train": "train", "validation": "test", "test": "test"}

# name, TFDS name, inputs prefix, text features, label names
for _name, _tfds, _prefix, _keys, _labels in [
    ("synth_mtf_ag_news", "ag_news_subset:1.0.0", "ag_news",
     ("title", "description"), AG_NEWS_LABELS),
    ("synth_mtf_imdb", "imdb_reviews/plain_text:1.0.0", "imdb", ("text",),
     IMDB_LABELS)]:
  _add(_name,
       source=seqio.TfdsDataSource(tfds_name=_tfds, splits=SPLITS),
       preprocessors=[
           functools.partial(classification, prefix=_prefix, text_keys=_keys,
                             label_names=_labels),
           seqio.preprocessors.tokenize, seqio.CacheDatasetPlaceholder(),
           seqio.preprocessors.append_eos_after_trim],
       output_features=FEATURES, metric_fns=[metrics.accuracy])

_add("synth_mtf_lm1b",
     source=seqio.TfdsDataSource(tfds_name="lm1b:1.1.0", splits=SPLITS),
     preprocessors=[
         text_to_targets, seqio.preprocessors.tokenize,
         seqio.CacheDatasetPlaceholder(),
         t5_preprocessors.split_tokens_to_targets_length,
         seqio.preprocessors.append_eos_after_trim],
     output_features={"targets": FEATURES["targets"]}, metric_fns=[])
