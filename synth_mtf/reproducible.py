"""Reproducible training through the stock CLI (gin/reproducible.gin).

The stock CLI seeds nothing at training time: two runs start from different
random weights. This dataset function wraps T5's mesh_train_dataset_fn and, since
Estimator calls the input function in the same graph before the model function,
first fixes that graph's random seed, so every initializer (T5's and ours) and
the data shuffle are the same in every run with the same seed.
"""

import gin
from t5.models import mesh_transformer
import tensorflow.compat.v1 as tf


@gin.configurable
def seeded_train_dataset_fn(sequence_length, vocabulary=None,
                            dataset_split="train", seed=gin.REQUIRED):
  if not isinstance(seed, int):
    raise ValueError("seeded_train_dataset_fn.seed must be an integer, got %r."
                     % (seed,))
  tf.random.set_random_seed(seed)
  return mesh_transformer.mesh_train_dataset_fn(
      sequence_length=sequence_length, vocabulary=vocabulary,
      dataset_split=dataset_split, seed=seed)
