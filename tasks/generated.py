"""Tasks the project generates itself: they run offline, with no download and no
GCS vocabulary, so the README's main job and the end-to-end tests work on a fresh
machine.

synth_mtf_reverse: inputs "reverse: k q a z" -> targets "z a q k". Reversal needs
  a position-dependent alignment, exactly what a Random Synthesizer learns.
synth_mtf_copy:    inputs "copy: k q a z"    -> targets "k q a z".
synth_mtf_reverse_lm: targets only, "k q a z = z a q k", for decoder-only
  models (utils.run.model_type = "lm").
Byte-level vocabulary (seqio.ByteVocabulary), metric: exact-match accuracy.
"""

import functools
import string

import numpy as np
import seqio
from t5.evaluation import metrics
import tensorflow.compat.v2 as tf

from synth_mtf.tasks.features import features

SPLIT_SIZES = {"train": 50000, "validation": 256, "test": 256}
SPLIT_SEEDS = {"train": 0, "validation": 1, "test": 2}
LETTERS = string.ascii_lowercase


def make_examples(op, split, min_len=3, max_len=8):
  """Deterministic (inputs, targets) pairs for one split."""
  if split not in SPLIT_SIZES:
    raise ValueError("Unknown split %r for synth_mtf_%s; use one of %s."
                     % (split, op, sorted(SPLIT_SIZES)))
  # Train never contains a held-out string, so the metric measures reversal,
  # not memorization.
  held = set()
  if split == "train":
    held = {w for s in ("validation", "test")
            for w, _ in make_examples(op, s, min_len, max_len)}
  rng = np.random.RandomState(SPLIT_SEEDS[split])
  out = []
  while len(out) < SPLIT_SIZES[split]:
    n = rng.randint(min_len, max_len + 1)
    word = [LETTERS[i] for i in rng.randint(0, len(LETTERS), size=n)]
    target = word[::-1] if op == "reverse" else word
    inputs = "%s: %s" % (op, " ".join(word))
    if inputs not in held:
      out.append((inputs, " ".join(target)))
  return out


def _dataset_fn(split, shuffle_files=False, seed=None, op="reverse"):
  del shuffle_files, seed
  inputs, targets = zip(*make_examples(op, split))
  return tf.data.Dataset.from_tensor_slices(
      {"inputs": list(inputs), "targets": list(targets)})


def _lm_dataset_fn(split, shuffle_files=False, seed=None):
  del shuffle_files, seed
  texts = ["%s = %s" % (i[len("reverse: "):], t)
           for i, t in make_examples("reverse", split)]
  return tf.data.Dataset.from_tensor_slices({"targets": texts})


BYTE_FEATURES = features(seqio.ByteVocabulary())

for _op in ("reverse", "copy"):
  _name = "synth_mtf_%s" % _op
  if _name in seqio.TaskRegistry.names():
    continue
  seqio.TaskRegistry.add(
      _name,
      source=seqio.FunctionDataSource(
          functools.partial(_dataset_fn, op=_op),
          splits=tuple(SPLIT_SIZES),
          num_input_examples=SPLIT_SIZES),
      preprocessors=[
          seqio.preprocessors.tokenize,
          seqio.CacheDatasetPlaceholder(),
          seqio.preprocessors.append_eos_after_trim,
      ],
      output_features=BYTE_FEATURES,
      metric_fns=[metrics.sequence_accuracy])

if "synth_mtf_reverse_lm" not in seqio.TaskRegistry.names():
  seqio.TaskRegistry.add(
      "synth_mtf_reverse_lm",
      source=seqio.FunctionDataSource(_lm_dataset_fn, splits=tuple(SPLIT_SIZES),
                                      num_input_examples=SPLIT_SIZES),
      preprocessors=[
          seqio.preprocessors.tokenize,
          seqio.CacheDatasetPlaceholder(),
          seqio.preprocessors.append_eos_after_trim,
      ],
      output_features={"targets": BYTE_FEATURES["targets"]},
      metric_fns=[])
