"""Reproducible training through the stock CLI (gin/reproducible.gin).

The stock CLI seeds nothing at training time: two runs start from different
random weights. This dataset function wraps T5's mesh_train_dataset_fn and, since
Estimator calls the input function in the same graph before the model function,
first fixes that graph's random seed, so every initializer (T5's and ours) and
the data shuffle are the same in every run with the same seed.
"""

import os
import sys

import gin
from t5.models import mesh_transformer
import tensorflow.compat.v1 as tf


THREAD_VARS = {"OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1",
               "TF_NUM_INTEROP_THREADS": "1", "TF_ENABLE_ONEDNN_OPTS": "0"}


def single_thread_if_requested(argv):
  """Run on one CPU thread when reproducible.gin is among the CLI's gin files.

  TF's and oneDNN's CPU kernels add partial sums in a schedule-dependent
  order, so two runs differ in the last bits, which training amplifies (~1e-3
  in the loss after a few steps). Measured here: one TF thread is not enough;
  oneDNN must be off as well. TensorFlow reads these variables when it is
  imported, before --module_import runs, so the process restarts itself once
  (same pid, same arguments) with them set; losses then agree bit for bit.
  """
  if not any(a.endswith("reproducible.gin") for a in argv):
    return
  if all(os.environ.get(k) == v for k, v in THREAD_VARS.items()):
    return
  if os.environ.get("SYNTH_MTF_REEXEC"):  # already restarted once: don't loop
    return
  env = dict(os.environ, SYNTH_MTF_REEXEC="1", **THREAD_VARS)
  print("synth_mtf: reproducible.gin: restarting on one CPU thread (%s)"
        % " ".join("%s=%s" % kv for kv in THREAD_VARS.items()), flush=True)
  os.execve(sys.executable, [sys.executable] + list(argv), env)


@gin.configurable
def seeded_train_dataset_fn(sequence_length, vocabulary=None,
                            dataset_split="train", seed=gin.REQUIRED):
  if not isinstance(seed, int):
    raise ValueError("seeded_train_dataset_fn.seed must be an integer, got %r."
                     % (seed,))
  if any(os.environ.get(k) != v for k, v in THREAD_VARS.items()):
    tf.logging.warning(
        "seeded_train_dataset_fn: TF runs on several threads, whose sums "
        "depend on scheduling: losses agree across runs to ~1e-3, not "
        "bit for bit. Pass reproducible.gin as a --gin_file of the CLI (it "
        "then restarts on one thread), or set %s." % THREAD_VARS)
  tf.random.set_random_seed(seed)
  return mesh_transformer.mesh_train_dataset_fn(
      sequence_length=sequence_length, vocabulary=vocabulary,
      dataset_split=dataset_split, seed=seed)
