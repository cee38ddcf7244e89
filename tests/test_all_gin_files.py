"""Every file under gin/ parses and builds a graph with tiny dimensions, so the
configs cannot rot. Fragments (included by others) are covered through them."""

import glob
import os
import re

import gin
import pytest

import synth_mtf
from synth_mtf import model_graph

GIN = synth_mtf.GIN_DIR
TINY = ["d_model = 32", "num_layers = 2", "d_ff = 64", "num_heads = 2",
        "d_kv = 8", "max_length = 16", "SynthesizerAttention.max_length = 16",
        "LinformerAttention.max_length = 16"]
EXPERIMENT_MODEL = {"table7": "models/encoder_only/linformer.gin"}
FRAGMENTS = {"models/synthesizer_stacks.gin", "models/encoder_only/stacks.gin",
             "experiments/common.gin"}


def rel(path):
  return os.path.relpath(path, GIN)


ALL = sorted(rel(p) for p in glob.glob(os.path.join(GIN, "**", "*.gin"),
                                       recursive=True))
MODELS = [p for p in ALL if p.startswith("models/") and p not in FRAGMENTS]
EXPERIMENTS = [p for p in ALL if p.startswith("experiments/")
               and p not in FRAGMENTS]
# added to a model and experiment, e.g. reproducible.gin, warm_start/*.gin
ADD_ONS = [p for p in ALL if "/" not in p or p.startswith("warm_start/")]


@pytest.fixture(autouse=True)
def _clear_gin():
  yield
  gin.clear_config(clear_constants=True)


def includes(path):
  with open(os.path.join(GIN, path)) as f:
    return re.findall(r"^include '([^']+)'", f.read(), flags=re.M)


def test_every_file_is_checked():
  covered = set(MODELS) | set(EXPERIMENTS) | set(ADD_ONS)
  covered |= {i for p in covered for i in includes(p)}
  sweeps = {p for p in ALL if p.startswith("sweeps/")}
  assert set(ALL) - sweeps <= covered, sorted(set(ALL) - covered - sweeps)


@pytest.mark.parametrize("path", MODELS)
def test_model_config_builds(path):
  variables = model_graph.build_variables(["models/t5.1.1.tiny.gin", path], TINY)
  assert any(n.startswith("encoder/") for n in variables)


@pytest.mark.parametrize("path", EXPERIMENTS)
def test_experiment_config_builds(path):
  name = os.path.basename(path)
  model = next((m for k, m in EXPERIMENT_MODEL.items() if name.startswith(k)),
               "models/synthesizer/random_plus_vanilla.gin")
  variables = model_graph.build_variables([path, model], TINY)
  assert variables
  mixture = gin.query_parameter("%MIXTURE_NAME")  # names its task or mixture
  import seqio  # pylint: disable=g-import-not-at-top
  assert mixture in set(seqio.TaskRegistry.names()) | set(
      seqio.MixtureRegistry.names())


@pytest.mark.parametrize("path", ADD_ONS)
def test_add_on_config_builds(path):
  variables = model_graph.build_variables(
      ["experiments/demo_reverse.gin",
       "models/synthesizer/random_plus_vanilla.gin", path], TINY)
  assert variables
  if path.startswith("warm_start/"):  # T5's relative bias, to restore into
    assert ("encoder/block_000/layer_000/SynthesizerAttention/"
            "relative_attention_bias") in variables
