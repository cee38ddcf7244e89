"""Every model config selects the variant it names, on top of stock T5 sizes.

Proof from the built graph (the same gin parsing the stock CLI does): the
variant's variables exist in every self-attention layer of both stacks, and no
q/k projection exists where the variant has none.
"""

import gin
import numpy as np
import pytest

from synth_mtf import model_graph
from synth_mtf import variants

# our Synthesizer configs, by file name, from the catalogue (which
# test_variants ties to the gin tree)
CONFIGS = sorted(v.stem for v in variants.synthesizers())
EXPECTED = {  # config -> (scopes of its synthesizing functions)
    "random": ["random"], "fixed_random": ["fixed_random"],
    "factorized_random": ["factorized_random"], "dense": ["dense"],
    "factorized_dense": ["factorized_dense"],
    "random_plus_dense": ["random", "dense"],
    "random_plus_vanilla": ["random", "dot_product"],
    "dense_plus_vanilla": ["dense", "dot_product"],
    "factorized_random_plus_vanilla": ["factorized_random", "dot_product"],
}
VARS = {"random": {"R"}, "fixed_random": {"R"},
        "factorized_random": {"R1", "R2"}, "dense": {"W1", "W2"},
        "factorized_dense": {"W1", "WA", "WB"}, "dot_product": {"q", "k"}}
SIZES = {"t5.1.1.tiny": (32, 2, 64), "t5.1.1.small": (512, 6, 64)}


@pytest.fixture(autouse=True)
def _clear_gin():
  yield
  gin.clear_config(clear_constants=True)


def test_every_config_is_listed():
  assert CONFIGS == sorted(EXPECTED)


def self_attention_layers(variables, stack):
  blocks = {n.split("/")[1] for n in variables if n.startswith(stack + "/block")}
  return ["%s/%s/layer_000" % (stack, b) for b in sorted(blocks)]


# every config on the tiny size; two on small (6 heads, 8 layers) as well
CASES = [(c, "t5.1.1.tiny") for c in CONFIGS] + [
    ("random", "t5.1.1.small"), ("dense_plus_vanilla", "t5.1.1.small")]


@pytest.mark.parametrize("config,size", CASES)
def test_config_takes_effect(config, size):
  d_model, heads, d_kv = SIZES[size]
  variables = model_graph.build_variables(
      ["models/%s.gin" % size, "models/synthesizer/%s.gin" % config],
      ["SynthesizerAttention.max_length = 8"])
  names = set(variables)
  assert not [n for n in names if "/SelfAttention/" in n], "stock attention left"
  for stack in ("encoder", "decoder"):
    layers = self_attention_layers(names, stack)
    assert len(layers) == (2 if size == "t5.1.1.tiny" else 8)
    for layer in layers:
      prefix = layer + "/SynthesizerAttention/"
      own = {n[len(prefix):] for n in names if n.startswith(prefix)}
      want = {"v", "o"} | {"%s/%s" % (s, v) for s in EXPECTED[config]
                           for v in VARS[s]}
      if len(EXPECTED[config]) > 1:
        want.add("alpha")
      assert own == want, (layer, sorted(own))
      # heads and d_kv follow the T5 size (%num_heads, %d_kv)
      assert variables[prefix + "v"][0] == [d_model, heads * d_kv]  # combined
  # cross-attention stays standard
  assert any("/EncDecAttention/" in n for n in names)
  fixed = [n for n in names if "fixed_random/R" in n]
  assert all(not variables[n][1] for n in fixed)  # Fixed: not trainable


def test_lm_model_type_uses_the_synthesizer():
  variables = model_graph.build_variables(
      ["models/t5.1.1.tiny.gin", "models/synthesizer/random.gin"],
      ["utils.run.model_type = 'lm'", "SynthesizerAttention.max_length = 8"])
  assert any(n.startswith("transformer/block_001/") and
             n.endswith("SynthesizerAttention/random/R")
             for n in variables)
  assert not [n for n in variables if "/SelfAttention/" in n]


@pytest.mark.parametrize("config", CONFIGS)
def test_parameter_counts_follow_table_1(config):
  """Variables of one layer == 2*d*h*d_kv (G and output) + Table 1's |theta| of
  each function (+ h*n alpha for a mixture), written out here independently."""
  n_max = 16
  variables = model_graph.build_variables(
      ["models/t5.1.1.tiny.gin", "models/synthesizer/%s.gin" % config],
      ["SynthesizerAttention.max_length = %d" % n_max])
  d, h, k = SIZES["t5.1.1.tiny"]
  table1 = {"random": h * n_max ** 2, "fixed_random": h * n_max ** 2,
            "factorized_random": h * 2 * n_max * 8,
            "dense": d * h * k + h * k * n_max,
            "factorized_dense": d * h * k + h * k * (4 + 4),
            "dot_product": 2 * d * h * k}
  kinds = EXPECTED[config]
  want = 2 * d * h * k + sum(table1[s] for s in kinds)
  want += h * len(kinds) if len(kinds) > 1 else 0
  prefix = "encoder/block_000/layer_000/SynthesizerAttention/"
  got = sum(int(np.prod(s)) for n, (s, _) in variables.items()
            if n.startswith(prefix))
  assert got == want
  # the layer's own accounting (used by `synth-mtf params`) agrees
  from synth_mtf.attention import SynthesizerAttention  # pylint: disable=g-import-not-at-top
  layer = SynthesizerAttention(synthesizers=kinds, max_length=n_max,
                               num_heads=h, key_value_size=k)
  assert layer.num_params(d) == want


def test_decoder_tables_sized_separately():
  """README: decoder/SynthesizerAttention.max_length sizes only the decoder's R."""
  variables = model_graph.build_variables(
      ["models/t5.1.1.tiny.gin", "models/synthesizer/random.gin"],
      ["SynthesizerAttention.max_length = 8",
       "decoder/SynthesizerAttention.max_length = 4"], length=4)
  shapes = {n.split("/")[0]: s for n, (s, _) in variables.items()
            if n.endswith("/random/R")}
  assert shapes == {"encoder": [2, 8, 8], "decoder": [2, 4, 4]}
