"""`synth-mtf fit`: the figures it reads from XLA against an independent count,
and its errors are the training's."""

import os
import subprocess
import sys

import gin
import numpy as np
import pytest

from synth_mtf import fit
from synth_mtf import model_graph

TINY = ["models/t5.1.1.tiny.gin", "models/synthesizer/random.gin"]
SETTINGS = ["utils.run.sequence_length = {'inputs': 32, 'targets': 8}",
            "utils.run.batch_size = ('sequences_per_batch', 8)",
            "utils.run.mesh_shape = 'batch:2'",
            "utils.run.layout_rules = 'batch:batch'",
            "SynthesizerAttention.max_length = 32"]
VOCAB = 100


def spec(files=TINY, params=SETTINGS):
  return dict(gin_file=files, gin_param=params, module_import=["synth_mtf"],
              gin_location_prefix=[], vocab_size=VOCAB)


@pytest.fixture(autouse=True)
def _clear_gin():
  yield
  gin.clear_config(clear_constants=True)


def adafactor_slot_shapes(shape):
  """Adafactor's second moments (mtf's defaults: factored when the last two
  dims are both >= 128, no first moment)."""
  if len(shape) >= 2 and min(shape[-2:]) >= 128:
    return [shape[:-1], shape[:-2] + shape[-1:]]
  return [shape]


def test_fit_counts_what_the_graph_holds():
  got = fit.measure(spec())
  assert got["status"] == "ok"
  c = got["config"]
  # 8 sequences split 2 ways over the mesh's batch dimension
  assert (c["batch_size"], c["batch_per_core"]) == (8, 4)
  assert c["lengths"] == {"inputs": 32, "targets": 8}
  # an independent count: the variables of the same config built in-process
  variables = model_graph.build_variables(TINY, SETTINGS, length=32,
                                          vocab=VOCAB)
  trainable = [s for s, t in variables.values() if t]
  params = 4 * sum(int(np.prod(s)) for s in trainable)  # float32 slices
  slots = 4 * sum(int(np.prod(x)) for s in trainable
                  for x in adafactor_slot_shapes(s))
  assert got["variables"] == dict(got["variables"], param_bytes=params,
                                  slot_bytes=slots)
  # XLA's inputs are exactly the variables, the slots, the six int32
  # features (4 rows of 32 inputs and 8 targets) and the int64 global step
  features = 3 * 4 * 4 * (32 + 8)
  m = got["memory"]
  assert m["parameters"] == params + slots + features + 8
  assert m["total"] > m["parameters"] + params  # updated copies, activations


def test_fit_prints_the_verdict_per_budget(capsys):
  result = dict(config=dict(model_type="bitransformer", lengths={"inputs": 8},
                            batch_size=4, mesh_shape="Shape[batch=1]",
                            batch_per_core=4, batch_split=[],
                            other_splits=[], activation_dtype="bfloat16",
                            vocab_size=VOCAB),
                variables=dict(param_bytes=2 * fit.GIB, slot_bytes=fit.GIB),
                memory=dict(parameters=3 * fit.GIB, total=20 * fit.GIB),
                compile_s=12.0, status="ok")
  text = fit.report(result, [16, 32])
  assert "budget 16 GiB: does NOT fit" in text
  assert "budget 32 GiB: fits" in text
  assert "XLA: temporaries and outputs" in text and " 17.000 GiB" in text


def run_cli(*args):
  cli = os.path.join(os.path.dirname(sys.executable), "synth-mtf")
  return subprocess.run([cli, "fit"] + list(args), capture_output=True,
                        text=True)


def test_gin_typo_is_the_training_error():
  bad = "SynthesizerAttention.num_headz = 2"
  with pytest.raises(ValueError) as training:  # what the CLI's parse raises
    model_graph.parse(TINY, SETTINGS + [bad])
  out = run_cli(*["--gin_file=" + f for f in TINY],
                *["--gin_param=" + p for p in SETTINGS + [bad]])
  assert out.returncode != 0
  assert "synth-mtf fit: error: ValueError: " in out.stderr
  first_line = str(training.value).splitlines()[0]
  assert first_line in out.stderr and "num_headz" in first_line


def test_length_above_max_length_is_the_training_error():
  too_long = SETTINGS[1:] + ["utils.run.sequence_length = {'inputs': 64, "
                             "'targets': 8}"]
  with pytest.raises(fit.FitError, match=(
      r"ValueError: .*exceeds SynthesizerAttention.max_length=32.*"
      r"SynthesizerAttention.max_length = 64")):
    fit.measure(spec(params=too_long))
