"""The output features every task of synth_mtf.tasks shares."""

import seqio


def features(vocab):
  """inputs and targets in `vocab`, each ending in EOS (as T5's tasks)."""
  return {"inputs": seqio.Feature(vocab, add_eos=True),
          "targets": seqio.Feature(vocab, add_eos=True)}
