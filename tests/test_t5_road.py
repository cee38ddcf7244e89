"""A T5 user's road through the stock CLI, offline (slow; run in CI too).

GLUE and SuperGLUE (T5's own tasks, preprocessors, postprocessors and metrics,
decoding included), span-corruption pretraining on C4, finetuning from its
operative config and through MtfModel.finetune, warm starting from a stock T5
checkpoint, the stop on a partial restore, and export / predict / score. The
TFDS data are tfds.testing.mock_data and the vocabulary a SentencePiece model
trained here (tests/offline_t5.py); the configs are the ones a user runs.
"""

import ast
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from synth_mtf import variants

pytestmark = pytest.mark.slow

WRAPPER = os.path.join(os.path.dirname(__file__), "offline_t5.py")
TINY = ["d_model = 32", "d_ff = 64", "num_heads = 2", "d_kv = 16",
        "num_layers = 2", "max_length = 64",
        "utils.run.sequence_length = {'inputs': 64, 'targets': 16}",
        "utils.run.batch_size = ('sequences_per_batch', 4)",
        "utils.run.mesh_shape = 'model:1,batch:1'",
        "utils.run.mesh_devices = ['cpu:0']",
        "utils.tpu_mesh_shape.tpu_topology = None"]
EVAL = ["eval.gin", "greedy_decode.gin"]
EVAL_PARAMS = ["run.dataset_split = 'validation'",
               "Bitransformer.decode.max_decode_length = 16"]
GLUE = "experiments/table5_glue_small.gin"
SUPER_GLUE = "experiments/table6_super_glue_small.gin"
C4 = "experiments/table4_c4_span_corruption.gin"
R, RV, VANILLA = (variants.get(v).gin for v in ("R", "R+V", "vanilla"))
# the tasks each mixture evaluates (T5 0.9.4's registrations), each must report
GLUE_TASKS = ["glue_cola_v002", "glue_sst2_v002", "glue_mrpc_v002",
              "glue_qqp_v002", "glue_stsb_v002", "glue_mnli_v002",
              "glue_mnli_matched_v002", "glue_mnli_mismatched_v002",
              "glue_qnli_v002", "glue_rte_v002"]
SUPER_GLUE_TASKS = ["super_glue_boolq_v102", "super_glue_cb_v102",
                    "super_glue_copa_v102", "super_glue_multirc_v102",
                    "super_glue_record_v102", "super_glue_rte_v102",
                    "super_glue_wic_v102", "super_glue_wsc_v102_simple_eval",
                    "dpr_v001_simple"]


@pytest.fixture(scope="module")
def spm(tmp_path_factory):
  # in a process of its own: SentencePiece's trainer crashes in a process
  # that has imported TensorFlow
  prefix = str(tmp_path_factory.mktemp("spm") / "spm")
  subprocess.run([sys.executable, "-c", "import offline_t5 as o; "
                  "o.train_spm(%r)" % prefix], check=True,
                 cwd=os.path.dirname(__file__), timeout=300)
  return prefix + ".model"


def cli(spm_path, model_dir, gin_files=(), params=(), flags=(), ok=True):
  """The stock CLI's main, offline; returns its log."""
  cmd = [sys.executable, WRAPPER, "--offline_spm=" + spm_path,
         "--model_dir=" + str(model_dir), "--module_import=synth_mtf"]
  cmd += ["--gin_file=" + f for f in gin_files]
  cmd += ["--gin_param=" + p for p in params] + list(flags)
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
  log = proc.stdout + proc.stderr
  assert (proc.returncode == 0) == ok, log[-5000:]
  return log


def variables(path):
  """{name: value} of a checkpoint's model variables (no optimizer slots)."""
  reader = tf.train.load_checkpoint(str(path))
  return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()
          if "_slot_" not in n and n != "global_step"}


def reported(log, task):
  return "INFO:tensorflow:eval/%s/" % task in log


# ---- 1. GLUE and SuperGLUE through the stock CLI ---------------------------

@pytest.fixture(scope="module")
def trained(spm, tmp_path_factory):
  """trained(experiment, model) -> the model dir of the TINY T5 with `model`
  (a gin file) trained 2 steps on `experiment`'s mixture, once per module:
  the tests that only evaluate, serve or score it share one."""
  dirs = {}

  def model_dir(experiment, model):
    if (experiment, model) not in dirs:
      d = tmp_path_factory.mktemp("trained")
      cli(spm, d, [experiment, model], TINY + ["utils.run.train_steps = 2"])
      dirs[(experiment, model)] = d
    return dirs[(experiment, model)]

  return model_dir


@pytest.mark.parametrize("experiment,tasks", [(GLUE, GLUE_TASKS),
                                              (SUPER_GLUE, SUPER_GLUE_TASKS)],
                         ids=["glue", "super_glue"])
@pytest.mark.parametrize("model", [R, RV], ids=["R", "R+V"])
def test_benchmark_mixture_trains_and_evaluates(spm, trained, experiment,
                                                tasks, model):
  model_dir = trained(experiment, model)
  names = set(variables(model_dir / "model.ckpt-2"))
  attention = [n for n in names if "/layer_000/" in n and "Attention" in n]
  assert attention and not [n for n in attention if "/SelfAttention/" in n]
  assert "encoder/block_001/layer_000/SynthesizerAttention/random/R" in names
  assert (("decoder/block_000/layer_000/SynthesizerAttention/dot_product/q"
           in names) == (model == RV))
  log = cli(spm, model_dir, [experiment, model] + EVAL,
            TINY + EVAL_PARAMS + ["eval_checkpoint_step = 2"])
  assert [t for t in tasks if not reported(log, t)] == []
  # decoded predictions of every task, one per target (8 mock examples;
  # ReCoRD makes one per entity)
  for task in tasks:
    out = model_dir / "validation_eval"
    with open(out / ("%s_2_predictions" % task)) as f:
      predictions = f.read().splitlines()
    with open(out / ("%s_targets" % task)) as f:
      targets = f.read().splitlines()
    assert len(predictions) == len(targets) >= 8, task


# ---- 2. pretrain (span corruption on C4), then finetune --------------------

@pytest.fixture(scope="module")
def pretrained(spm, tmp_path_factory):
  """Syn(R) pretrained 3 steps on c4_v220_span_corruption (T5's own task)."""
  d = tmp_path_factory.mktemp("pretrained")
  log = cli(spm, d, [C4, R], TINY + ["utils.run.train_steps = 3"])
  assert "tf_loss" in log
  return d


def test_finetune_from_operative_config_starts_from_pretrained(spm, pretrained,
                                                              tmp_path):
  """T5's README recipe: the pretraining run's operative_config.gin, another
  mixture, init_checkpoint and train_steps counted from its global_step."""
  cli(spm, tmp_path, [str(pretrained / "operative_config.gin")],
      ["MIXTURE_NAME = 'glue_v002_proportional'",
       "utils.run.init_checkpoint = '%s'" % (pretrained / "model.ckpt-3"),
       "utils.run.train_steps = 5"])
  before = variables(pretrained / "model.ckpt-3")
  start = variables(tmp_path / "model.ckpt-3")  # written before step 4
  assert sorted(start) == sorted(before)
  assert any(n.endswith("SynthesizerAttention/random/R") for n in start)
  for name, value in before.items():
    np.testing.assert_array_equal(start[name], value, err_msg=name)
  after = variables(tmp_path / "model.ckpt-5")  # and then it trained
  assert any(not np.array_equal(after[n], v) for n, v in before.items())


def python(spm_path, code):
  """Run `code` in a fresh process with T5 offline (tests/offline_t5.py);
  returns its output."""
  script = ("import sys, tensorflow.compat.v1 as tf\n"
            "tf.disable_v2_behavior()\n"
            "import offline_t5, t5\n"
            "with offline_t5.offline(%r):\n" % spm_path +
            "".join("  %s\n" % line for line in code.strip().splitlines()))
  proc = subprocess.run([sys.executable, "-c", script], capture_output=True,
                        text=True, timeout=900, cwd=os.path.dirname(__file__))
  assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
  return proc.stdout


MTF_MODEL = ("model = t5.models.MtfModel(model_dir=%r, tpu=None, "
             "mesh_shape='model:1,batch:1', mesh_devices=['cpu:0'], "
             "batch_size=4, sequence_length={'inputs': 64, 'targets': 16}, "
             "learning_rate_schedule=0.003)")  # T5's finetuning notebook


def test_mtf_model_finetune_starts_from_pretrained(spm, pretrained, tmp_path):
  """The same through t5.models.MtfModel.finetune, in Python (T5 0.9.4's
  CLI --mode=finetune passes MtfModel.finetune an argument it does not take)."""
  python(spm, MTF_MODEL % str(tmp_path) + """
model.finetune('glue_v002_proportional', finetune_steps=2,
               pretrained_model_dir=%r)""" % str(pretrained))
  before = variables(pretrained / "model.ckpt-3")
  start = variables(tmp_path / "model.ckpt-3")
  assert sorted(start) == sorted(before)
  for name, value in before.items():
    np.testing.assert_array_equal(start[name], value, err_msg=name)
  assert os.path.exists(tmp_path / "model.ckpt-5.index")


# ---- 3. warm start from a stock T5 checkpoint; 4. no silent partial restore -

@pytest.fixture(scope="module")
def stock_t5(spm, tmp_path_factory):
  """A stock T5 (SelfAttention with its shared relative bias), 3 steps."""
  d = tmp_path_factory.mktemp("stock_t5")
  cli(spm, d, [GLUE, VANILLA], TINY + ["utils.run.train_steps = 3"])
  return d


def warm_start(spm, model_dir, checkpoint, files, params=(), ok=True,
               model=RV):
  """Train from `checkpoint` (its global_step is 3): the run writes its
  starting point as model.ckpt-3."""
  return cli(spm, model_dir, [GLUE, model] + list(files),
             TINY + ["utils.run.init_checkpoint = '%s'" % checkpoint,
                     "utils.run.train_steps = 3"] + list(params), ok=ok)


def perplexity(spm, model_dir, files):
  """neg_log_perplexity of model.ckpt-3 on the same validation batches."""
  log = cli(spm, model_dir, [GLUE] + list(files) + ["perplexity_eval.gin"],
            TINY + ["run.dataset_split = 'validation'",
                    "eval_checkpoint_step = 3",
                    "utils.run.perplexity_eval_steps = 4"])
  from synth_mtf import runner  # pylint: disable=g-import-not-at-top
  return runner.metric_curve(log, "neg_log_perplexity")[3]


@pytest.fixture(scope="module")
def warm_mixture(spm, stock_t5, tmp_path_factory):
  """R+V warm-started from the stock T5 with warm_start/from_t5_mixture.gin,
  once per module: one test reads its variables, the next evaluates it."""
  d = tmp_path_factory.mktemp("warm_mixture")
  warm_start(spm, d, stock_t5 / "model.ckpt-3",
             ["warm_start/from_t5_mixture.gin"])
  return d


def test_warm_start_from_t5_restores_its_attention(stock_t5, warm_mixture):
  from synth_mtf import warm_start as ws  # pylint: disable=g-import-not-at-top
  t5 = variables(stock_t5 / "model.ckpt-3")
  ours = variables(warm_mixture / "model.ckpt-3")
  fresh = sorted(n for n in ours if ws.t5_name(n) not in t5)
  # only what T5 never had: Random's R and the mixture weights
  assert fresh and all(n.endswith(("/random/R", "/alpha")) for n in fresh)
  for stack in ("encoder", "decoder"):
    layer = "%s/block_000/layer_000/SynthesizerAttention/" % stack
    for name in ("v", "o", "dot_product/q", "dot_product/k",
                 "relative_attention_bias"):
      assert layer + name in ours
  for name in ours:
    if name not in fresh:  # attention mapped, everything else by its name
      np.testing.assert_array_equal(ours[name], t5[ws.t5_name(name)],
                                    err_msg=name)
  alpha = ours["encoder/block_001/layer_000/SynthesizerAttention/alpha"]
  alpha = alpha.astype(np.float64)  # T5.1.0 keeps bfloat16 masters
  weights = np.exp(alpha) / np.exp(alpha).sum(-1, keepdims=True)
  np.testing.assert_allclose(weights, [[0.01, 0.99]] * 2, rtol=1e-2)


def test_warm_started_mixture_starts_near_the_t5_model(spm, stock_t5,
                                                       warm_mixture, tmp_path):
  """Step 0 of the warm-started R+V (alpha 0.99 on V) computes nearly the T5
  model's loss; with a uniform alpha it does not."""
  near, uniform = warm_mixture, tmp_path / "uniform"
  warm_start(spm, uniform, stock_t5 / "model.ckpt-3", ["warm_start/from_t5.gin"])
  t5 = perplexity(spm, stock_t5, [VANILLA])
  gap_near = abs(perplexity(
      spm, near, [RV, "warm_start/from_t5_mixture.gin"]) - t5)
  gap_uniform = abs(perplexity(
      spm, uniform, [RV, "warm_start/from_t5.gin"]) - t5)
  assert gap_near < 0.01 * abs(t5), (t5, gap_near)
  assert gap_uniform > 5 * gap_near, (t5, gap_near, gap_uniform)


def test_partial_restore_stops_with_the_fixes(spm, stock_t5, tmp_path):
  """The trap: a stock T5 checkpoint into R+V without the warm-start file
  would restore none of the attention (exit 0 before)."""
  log = warm_start(spm, tmp_path / "a", stock_t5 / "model.ckpt-3", [],
                   ok=False)
  assert "does not provide every variable of encoder/block_000/layer_000/" \
         "SynthesizerAttention" in log
  assert "dot_product/q" in log and "warm_start/from_t5.gin" in log
  assert "SynthesizerAttention.fresh_variables" in log
  assert not os.path.exists(tmp_path / "a" / "model.ckpt-3.index")
  # accepted explicitly, it runs (and the attention is fresh)
  warm_start(spm, tmp_path / "b", stock_t5 / "model.ckpt-3", [],
             ["SynthesizerAttention.fresh_variables = '.*'"])
  assert "encoder/block_000/layer_000/SynthesizerAttention/v" in variables(
      tmp_path / "b" / "model.ckpt-3")


def test_init_checkpoint_with_other_shapes_stops(spm, pretrained, tmp_path):
  """Same names, another max_length: named with both shapes."""
  log = cli(spm, tmp_path, [str(pretrained / "operative_config.gin")],
            ["MIXTURE_NAME = 'glue_v002_proportional'", "max_length = 32",
             "utils.run.sequence_length = {'inputs': 32, 'targets': 16}",
             "utils.run.init_checkpoint = '%s'" % (pretrained / "model.ckpt-3"),
             "utils.run.train_steps = 5"], ok=False)
  assert "shapes differ: random/R: [2, 32, 32] here, [2, 64, 64]" in log


# ---- 5. serving and scoring -------------------------------------------------

@pytest.fixture(scope="module")
def glue_model(trained):
  return trained(GLUE, RV)  # the one test_benchmark_mixture_... trained


MODEL_API = ["--use_model_api", "--batch_size=4", "--input_sequence_length=64",
             "--target_sequence_length=16", "--tpu=", "--checkpoint_mode=latest"]
INPUTS = ["sst2 sentence: the cat was good",
          "rte sentence1: a dog. sentence2: the cat",
          "cola sentence: this is a sentence"]
TARGETS = ["positive", "entailment", "acceptable"]
SERVE = """
import glob, json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401  (the SentencePiece ops of the export)
path, = glob.glob(sys.argv[1] + "/*/saved_model.pb")
serve = tf.saved_model.load(path.rsplit("/", 1)[0]).signatures["serving_default"]
args = json.loads(sys.argv[2])
out = serve(**{k: tf.constant(v) for k, v in args.items()})
print(json.dumps({k: [x.decode() if isinstance(x, bytes) else float(x)
                      for x in v.numpy().ravel()] for k, v in out.items()}))
"""


def serve(export_dir, **features):
  """Load the SavedModel with tf.saved_model.load (TF2, a fresh process) and
  call its serving signature on strings."""
  proc = subprocess.run([sys.executable, "-c", SERVE, str(export_dir),
                         json.dumps(features)], capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.splitlines()[-1])


def write_lines(path, lines):
  path.write_text("\n".join(lines) + "\n")
  return str(path)


def test_exported_model_serves_what_predict_decodes(spm, glue_model, tmp_path):
  inputs = write_lines(tmp_path / "inputs.txt", INPUTS)
  cli(spm, glue_model, flags=MODEL_API + [
      "--mode=predict", "--input_file=" + inputs,
      "--output_file=%s" % (tmp_path / "predicted")])
  (predicted,) = glob.glob(str(tmp_path / "predicted-*"))
  with open(predicted) as f:  # T5 writes each decode as a bytes literal
    decoded = [ast.literal_eval(l).decode() for l in f.read().splitlines()]
  assert len(decoded) == len(INPUTS)
  cli(spm, glue_model, flags=MODEL_API + [
      "--mode=export_predict", "--export_dir=%s" % (tmp_path / "export")])
  served = serve(tmp_path / "export", inputs=INPUTS)
  assert served["inputs"] == INPUTS
  assert served["outputs"] == decoded


def test_scores_are_the_models_log_likelihoods(spm, glue_model, tmp_path):
  """--mode=score, the export_score SavedModel and the log-likelihood computed
  from the model's logits agree."""
  cli(spm, glue_model, params=[
      # mtf 0.1.21 fails writing the example texts after the scores
      # (bytes.tolist); the scores file is complete without them
      "save_scores.save_example_text = False"], flags=MODEL_API + [
          "--mode=score",
          "--input_file=" + write_lines(tmp_path / "in.txt", INPUTS),
          "--target_file=" + write_lines(tmp_path / "tg.txt", TARGETS),
          "--output_file=%s" % (tmp_path / "scored")])
  scores = [float(s) for s in
            (tmp_path / "scored.scores").read_text().split()]
  reference = json.loads(python(spm, """
import json, offline_t5
print("LL", json.dumps(offline_t5.log_likelihoods(%r, %r, %r)))""" % (
    str(glue_model), INPUTS, TARGETS)).split("LL ")[-1])
  np.testing.assert_allclose(scores, reference, rtol=1e-5)
  assert all(s < 0 for s in scores)
  cli(spm, glue_model, flags=MODEL_API + [
      "--mode=export_score", "--export_dir=%s" % (tmp_path / "export")])
  served = serve(tmp_path / "export", inputs=INPUTS, targets=TARGETS)
  np.testing.assert_allclose(served["scores"][:3], reference, rtol=1e-5)
  assert served["targets"][:3] == TARGETS
