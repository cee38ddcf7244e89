"""End to end through the stock t5_mesh_transformer CLI (slow; run in CI too).

Every Synthesizer variant (gin/models/synthesizer/) trains a few steps on the
generated task and evaluates with decoding; the checkpoint proves the variant
is what ran.
"""

import pytest
import tensorflow as tf

import conftest
from synth_mtf import variants

pytestmark = pytest.mark.slow

CONFIGS = sorted(v.stem for v in variants.synthesizers())
SCOPES = {"random": ["random/R"], "fixed_random": ["fixed_random/R"],
          "factorized_random": ["factorized_random/R1"], "dense": ["dense/W2"],
          "factorized_dense": ["factorized_dense/WA"],
          "random_plus_dense": ["random/R", "dense/W2", "alpha"],
          "random_plus_vanilla": ["random/R", "dot_product/q", "alpha"],
          "dense_plus_vanilla": ["dense/W2", "dot_product/k", "alpha"],
          "factorized_random_plus_vanilla": ["factorized_random/R2",
                                             "dot_product/q", "alpha"]}
run_cli = conftest.run_stock_cli


def checkpoint_names(model_dir):
  return set(tf.train.load_checkpoint(model_dir).get_variable_to_shape_map())


def train_and_eval(model_dir, config, extra_eval_files=("greedy_decode.gin",),
                   params=()):
  run_cli(model_dir, ["models/synthesizer/%s.gin" % config],
          conftest.TINY_T5_PARAMS + list(params))
  return checkpoint_names(model_dir), evaluate(model_dir, config,
                                               extra_eval_files, params)


def evaluate(model_dir, config, extra_eval_files=("greedy_decode.gin",),
             params=()):
  """Decode the validation split with the checkpoint of step 3; -> the log."""
  return run_cli(model_dir, ["models/synthesizer/%s.gin" % config, "eval.gin"]
                 + list(extra_eval_files),
                 list(params) + ["run.dataset_split='validation'",
                                 "utils.run.batch_size=('sequences_per_batch', 64)",
                                 "Bitransformer.decode.max_decode_length=16",
                                 "eval_checkpoint_step=3"])


def assert_variant(names, config):
  assert not [n for n in names if "/SelfAttention/" in n]
  for stack in ("encoder", "decoder"):
    for block in ("block_000", "block_001"):
      for scope in SCOPES[config]:
        name = "%s/%s/layer_000/SynthesizerAttention/%s" % (stack, block, scope)
        assert name in names, (name, sorted(n for n in names if stack in n))


@pytest.mark.parametrize("config", CONFIGS)
def test_stock_cli_trains_and_decodes(config, trained_tiny_t5):
  # greedy_decode.gin also switches activations to bfloat16, as on TPU
  model_dir = trained_tiny_t5(config)
  names, log = checkpoint_names(model_dir), evaluate(model_dir, config)
  assert_variant(names, config)
  assert "eval/synth_mtf_reverse/sequence_accuracy at step 3:" in log


def test_beam_search_with_cached_keys(trained_tiny_t5):
  # the model the test above trained and decoded greedily
  model_dir = trained_tiny_t5("dense_plus_vanilla")
  names = checkpoint_names(model_dir)
  log = evaluate(model_dir, "dense_plus_vanilla",
                 extra_eval_files=("beam_search.gin",))
  assert_variant(names, "dense_plus_vanilla")
  assert "sequence_accuracy at step 3:" in log


def test_multiprocessor_mesh_through_the_cli(tmp_path):
  """model:2,batch:2 with heads split over 'model', one CPU listed 4 times."""
  mesh = ["utils.run.mesh_shape='model:2,batch:2'",
          "utils.run.mesh_devices=['cpu:0','cpu:0','cpu:0','cpu:0']",
          "utils.run.layout_rules='batch:batch,heads:model,d_ff:model,"
          "vocab:model'"]
  names, log = train_and_eval(str(tmp_path), "random_plus_dense", params=mesh)
  assert_variant(names, "random_plus_dense")
  assert "sequence_accuracy at step 3:" in log


def test_decoder_only_lm(tmp_path):
  run_cli(str(tmp_path), ["models/synthesizer/random_plus_vanilla.gin"],
          conftest.TINY_T5_PARAMS + ["utils.run.model_type='lm'",
                   "MIXTURE_NAME='synth_mtf_reverse_lm'",
                   "utils.run.sequence_length={'inputs': 32, 'targets': 32}"])
  names = checkpoint_names(str(tmp_path))
  for block in ("block_000", "block_001"):
    assert ("transformer/%s/layer_000/SynthesizerAttention/random/R" % block
            in names)
