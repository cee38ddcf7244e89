"""The variant catalogue agrees with the gin tree and with its own labels."""

import glob
import os
import subprocess
import sys

import gin
import pytest

import synth_mtf
from synth_mtf import model_graph
from synth_mtf import sweep as sweep_lib
from synth_mtf import variants

# the paper's letters, spelled out independently of the catalogue
LETTERS = {"R": "random", "Fix": "fixed_random", "FR": "factorized_random",
           "D": "dense", "FD": "factorized_dense", "V": "vanilla"}
FRAGMENTS = {"models/synthesizer_stacks.gin", "models/encoder_only/stacks.gin"}


@pytest.fixture(autouse=True)
def _clear_gin():
  yield
  gin.clear_config(clear_constants=True)


def test_catalogue_and_gin_tree_name_the_same_files():
  listed = set()
  for v in variants.CATALOGUE:
    for f in (v.gin, v.encoder_only):
      if f:
        assert os.path.exists(os.path.join(synth_mtf.GIN_DIR, f)), (v, f)
        listed.add(f)
  on_disk = {os.path.relpath(p, synth_mtf.GIN_DIR) for d in
             ("synthesizer", "baselines", "encoder_only") for p in glob.glob(
                 os.path.join(synth_mtf.GIN_DIR, "models", d, "*.gin"))}
  assert on_disk - FRAGMENTS == listed


@pytest.mark.parametrize("kind", ["bi", "encoder_only"])
def test_each_label_selects_what_it_names(kind):
  for label in variants.labels(kind):
    v = variants.get(label)
    model_graph.parse([v.gin_file(kind)], v.bindings)
    if v.stock:  # mesh-tensorflow's layer in the self-attention stacks
      stack = str(gin.query_parameter(
          "encoder/transformer.make_layer_stack.layers"))
      assert "transformer_layers.Synthesizer" in stack, label
      assert v.bindings[0].endswith(repr(gin.query_parameter(
          "transformer_layers.Synthesizer.synthesize_mode"))), label
    elif label in ("vanilla", "Linformer", "DyConv", "LightConv"):
      with pytest.raises(ValueError):  # no synthesizer bound
        gin.query_parameter("SynthesizerAttention.synthesizers")
    else:
      want = [LETTERS[part] for part in label.split("+")]
      assert gin.query_parameter(
          "SynthesizerAttention.synthesizers") == want, label
      assert v.paper == "Syn(%s)" % label


def test_stock_labels_mirror_ours():
  for v in variants.CATALOGUE:
    if v.stock:
      ours = v.label[len("stock_"):]
      assert ours in variants.labels("bi", stock=False), v.label


def test_unknown_label_and_missing_kind_name_the_choices():
  with pytest.raises(ValueError, match="unknown variant 'RV'.*R\\+V"):
    variants.get("RV")
  with pytest.raises(ValueError, match="Fix has no encoder_only config.*FR"):
    variants.get("Fix").gin_file("encoder_only")
  with pytest.raises(ValueError, match="unknown kind 'enc'"):
    variants.get("R").gin_file("enc")


def test_sweep_takes_labels():
  s = sweep_lib.Sweep(variants=["vanilla", "stock_R"], grid={"d_model": [8]})
  assert [(r[1], r[2], r[3]) for r in s.runs()] == [
      ("vanilla", "models/baselines/transformer.gin", ["d_model = 8"]),
      ("stock_R", "models/baselines/stock_synthesizer.gin",
       ["transformer_layers.Synthesizer.synthesize_mode = 'random'",
        "d_model = 8"])]
  enc = sweep_lib.Sweep(variants=["FR+V"], kind="encoder_only")
  assert enc.runs()[0][2] == (
      "models/encoder_only/factorized_random_plus_vanilla.gin")
  with pytest.raises(ValueError, match="Sweep.variants: Fix has no "
                     "encoder_only config"):
    sweep_lib.Sweep(variants=["Fix"], kind="encoder_only")


def test_cli_lists_the_catalogue():
  cli = os.path.join(os.path.dirname(sys.executable), "synth-mtf")
  out = subprocess.run([cli, "variants"], capture_output=True, text=True,
                       check=True).stdout
  rows = [line.split(" | ")[0].strip("| ") for line in out.splitlines()
          if line.startswith("| ") and not line.startswith("| label")]
  assert rows == [v.label for v in variants.CATALOGUE]


def test_vanilla_is_one_function_under_each_of_its_names():
  """'vanilla' (the documented name), 'v' and 'dot_product' (its class's)
  build T5's dot-product attention, and the catalogue's +V files, which say
  'vanilla', keep the variables' scope every checkpoint so far has."""
  from synth_mtf import synthesizers  # pylint: disable=g-import-not-at-top
  for name in ("vanilla", "v", "V", "dot_product"):
    assert type(synthesizers.build(name)) is synthesizers.DotProduct, name
  names = model_graph.build_variables(
      ["models/t5.1.1.tiny.gin", "models/synthesizer/random_plus_vanilla.gin"],
      ["SynthesizerAttention.max_length = 8"])
  assert ("encoder/block_000/layer_000/SynthesizerAttention/dot_product/q"
          in names)
