"""`synth-mtf fit`: before a TPU job, will its training step fit a core?

  synth-mtf fit --gin_file=models/t5.1.1.small.gin \\
      --gin_file=models/synthesizer/random.gin \\
      --gin_param="utils.run.sequence_length = {'inputs': 2048, 'targets': 128}" \\
      --gin_param="utils.run.batch_size = ('sequences_per_batch', 64)" [...]

takes the flags of the user's t5_mesh_transformer command (--gin_file,
--gin_param, --module_import, --gin_location_prefix; --model_dir, --tpu and the
like are accepted and unused: no TPU, no data). It parses gin as the CLI does,
reads utils.run's sequence_length, batch_size, mesh_shape and layout_rules as
utils.run does (compute_batch_size included), and builds the user's model on
the batch one core gets (the batch divided over the mesh dimensions the layout
splits `batch` over), with the activation dtype gin binds (a TPU job's; the CLI
forces float32 only when run without --tpu). One training step (forward,
mtf.gradients, the configured optimizer's update) is compiled with XLA on this
CPU, in a child process started with XLA_FLAGS asking XLA to dump its buffer
assignment; as soon as that file is written the child is stopped (the step is
never run, so its temporaries are never allocated). Printed: parameters and
optimizer slots (counted from the graph), XLA's inputs, temporaries and total,
the compile time, and whether the total fits each budget.
"""

import argparse
import glob
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

GIB = 2 ** 30
EVENT = "@@fit "
DEFAULT_VOCAB = 32100  # T5's SentencePiece vocabulary (mtf pads it to 32128)
NOTE = (
    "This is an estimate. XLA compiled the step for this CPU; a TPU's XLA pads "
    "arrays to its tiles (8 x 128), fuses and schedules its own way, updates "
    "the variables in place (here the updated values get buffers of their own, "
    "counted under temporaries, so for the variables this errs high) and adds "
    "the buffers of communication between cores. With bfloat16 activations "
    "this CPU's XLA computes bfloat16 matmuls in float32 and keeps float32 "
    "copies of their inputs where a TPU keeps bfloat16, so it errs high there "
    "too. Leave a margin.")
AS_SLACK = 8 * GIB  # address space a capped child may reserve above the cap
IGNORED_FLAGS = ("model_dir", "tpu", "gcp_project", "tpu_zone", "tpu_job_name",
                 "t5_tfds_data_dir")


class FitError(RuntimeError):
  pass


def emit(event, **fields):
  print(EVENT + json.dumps(dict(fields, event=event)), flush=True)


# --- the child: parse, read the run's settings, build, compile ----------------

def parse_gin(spec):
  """As t5_mesh_transformer does: --module_import, T5's and mtf's gin search
  paths, mtf's defaults.gin, then the files and bindings, skipping the gin
  references T5 deprecated."""
  from t5.models import mesh_transformer  # pylint: disable=g-import-not-at-top
  from synth_mtf import model_graph  # pylint: disable=g-import-not-at-top
  import gin  # pylint: disable=g-import-not-at-top
  for module in spec["module_import"]:
    importlib.import_module(module)
  for prefix in spec["gin_location_prefix"]:
    gin.add_config_file_search_path(prefix)
  model_graph.parse(spec["gin_file"], spec["gin_param"],
                    skip_unknown=mesh_transformer.DEPRECATED_GIN_REFERENCES)


def run_settings():
  """utils.run's sequence_length, batch_size (in sequences, as
  compute_batch_size makes it), mesh_shape and layout_rules, read by calling
  utils.run itself with the estimator and the training loop replaced by
  functions that keep their arguments."""
  from unittest import mock  # pylint: disable=g-import-not-at-top
  from mesh_tensorflow.transformer import utils as mtf_utils  # pylint: disable=g-import-not-at-top
  got = {}

  def estimator(**kw):
    got.update(mesh_shape=kw["mesh_shape"], layout_rules=kw["layout_rules"])

  def train(estimator, vocabulary, sequence_length, batch_size, *a, **k):
    del estimator, vocabulary, a, k
    got.update(sequence_length=sequence_length, batch_size=batch_size)

  with mock.patch.object(mtf_utils, "get_estimator", estimator):
    mtf_utils.run(tpu_job_name=None, tpu=None, gcp_project=None,
                  tpu_zone=None, model_dir=tempfile.mkdtemp(prefix="fit_"),
                  mode="train", vocabulary=None,
                  train_dataset_fn=lambda *a, **k: None,
                  train_model_fn=train)
  return got


def per_core(settings):
  """(batch per core, mesh dims the batch is split over, other splits)."""
  shape, rules = settings["mesh_shape"], settings["layout_rules"]
  batch_over, others = [], []
  for tensor_dim, mesh_dim in sorted(rules._pairs):  # pylint: disable=protected-access
    if shape.size and mesh_dim in shape.dimension_names and (
        shape.get_dim_by_name(mesh_dim).size > 1):
      (batch_over if tensor_dim == "batch" else others).append(
          (tensor_dim, mesh_dim, shape.get_dim_by_name(mesh_dim).size))
  ways = 1
  for _, _, size in batch_over:
    ways *= size
  if settings["batch_size"] % ways:
    raise ValueError("batch_size %d is not divisible by the %d-way batch "
                     "split of mesh_shape %s" % (settings["batch_size"], ways,
                                                 shape))
  return settings["batch_size"] // ways, batch_over, others


def child(spec):
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  from synth_mtf import model_graph  # pylint: disable=g-import-not-at-top
  from synth_mtf import xla  # pylint: disable=g-import-not-at-top
  tf.disable_v2_behavior()
  try:
    parse_gin(spec)
    settings = run_settings()
    lengths = settings["sequence_length"]
    if isinstance(lengths, int):
      lengths = {"inputs": lengths, "targets": lengths}
    batch, batch_over, others = per_core(settings)
    import gin  # pylint: disable=g-import-not-at-top
    from mesh_tensorflow.transformer import utils as mtf_utils  # pylint: disable=g-import-not-at-top
    emit("config", model_type=model_graph.model_type(), lengths=lengths,
         batch_size=settings["batch_size"], batch_per_core=batch,
         mesh_shape=str(settings["mesh_shape"]),
         batch_split=batch_over, other_splits=others,
         activation_dtype=mtf_utils.get_variable_dtype().activation_dtype.name,
         vocab_size=spec["vocab_size"])
    features = xla.packed_features(batch, lengths["inputs"], spec["vocab_size"],
                                   target_length=lengths["targets"])
    step = xla.build(features, spec["vocab_size"], compiled=True)
    gin.clear_config(clear_constants=True)
  except (ValueError, TypeError, KeyError, OSError, RuntimeError) as e:
    emit("error", message="%s: %s" % (type(e).__name__, e))
    return 2
  sizes = {"param": 0, "slot": 0}  # what a core holds: slices and slots
  for name, v in step.variables.items():
    if name == "global_step":
      continue
    if name.endswith("_slice_0") or name + "_slice_0" not in step.variables:
      n = int(np.prod(v.shape.as_list())) * v.dtype.base_dtype.size
      sizes["slot" if "_slot_" in name else "param"] += n
  emit("variables", param_bytes=sizes["param"], slot_bytes=sizes["slot"])
  if spec.get("rss_cap") and sizes["param"] + sizes["slot"] > spec["rss_cap"]:
    emit("too_big", note="the variables alone exceed the memory cap")
    return 3
  with tf.Session(graph=step.graph) as sess:
    for op in step.init_ops:
      sess.run(op)
    emit("compiling")  # the parent stops us once XLA's dump is written
    sess.run(step.fetches)
  return 0


# --- the parent: start the child, watch it, read the dump ----------------------

def _rss(pid):
  try:
    with open("/proc/%d/status" % pid) as f:
      for line in f:
        if line.startswith("VmRSS:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return 0


def _dumped(dump_dir):
  """The buffer assignment, once XLA has finished writing it (its size holds
  for a second), else None."""
  files = glob.glob(os.path.join(dump_dir, "*buffer-assignment.txt"))
  if not files:
    return None
  size = os.path.getsize(files[0])
  time.sleep(1.0)
  return files[0] if os.path.getsize(files[0]) == size and size else None


def measure(spec, rss_cap=None, compile_cap_s=None, dump_dir=None,
            log_path=None):
  """Compile the step of spec (gin_file, gin_param, module_import,
  gin_location_prefix, vocab_size) in a child process; returns a dict with
  status ('ok', 'oom', 'too_slow', 'too_big'), the child's events (config,
  variables) and XLA's memory (xla.memory_report) and compile_s when ok.
  Raises FitError on a configuration error."""
  from synth_mtf import xla  # pylint: disable=g-import-not-at-top
  own_dump = dump_dir is None
  dump_dir = dump_dir or tempfile.mkdtemp(prefix="fit_xla_")
  env = dict(os.environ, XLA_FLAGS="--xla_dump_to=%s --xla_dump_hlo_as_text"
             % dump_dir, TF_CPP_MIN_LOG_LEVEL="2")
  spec = dict(spec, rss_cap=rss_cap)
  cmd = [sys.executable, "-m", "synth_mtf.fit", "--child", json.dumps(spec)]
  log_path = log_path or os.path.join(dump_dir, "fit_child.log")
  log = open(log_path, "w")

  def backstop():  # a step that starts running after the dump allocates its
    # temporaries: past the cap plus slack, allocations fail (the figure is in)
    if rss_cap:
      import resource  # pylint: disable=g-import-not-at-top
      limit = int(rss_cap + AS_SLACK)
      resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env,
                          text=True, preexec_fn=backstop)
  events = {}

  def read():
    for line in proc.stdout:
      log.write(line)
      if line.startswith(EVENT):
        e = json.loads(line[len(EVENT):])
        events[e["event"]] = dict(e, at=time.monotonic())

  reader = threading.Thread(target=read, daemon=True)
  reader.start()
  status = None
  try:
    while status is None:
      started = events.get("compiling", {}).get("at")
      exited = proc.poll() is not None
      if exited:
        reader.join(timeout=10)
      if "error" in events:
        raise FitError(events["error"]["message"])
      if "too_big" in events:
        status = "too_big"
      elif started and _dumped(dump_dir):
        status, compile_s = "ok", time.monotonic() - started
      elif exited:
        log.flush()
        with open(log_path) as f:
          tail = f.read()[-3000:]
        raise FitError("the compile process failed (exit %s):\n%s" % (
            proc.returncode, tail))
      elif rss_cap and _rss(proc.pid) > rss_cap:
        status = "oom"
      elif started and compile_cap_s and (
          time.monotonic() - started > compile_cap_s):
        status = "too_slow"
      else:
        time.sleep(0.2)
  finally:
    if proc.poll() is None:
      proc.kill()
    proc.wait()
    reader.join(timeout=10)
    log.close()
  result = dict(status=status, **{k: events[k] for k in ("config",
                                                        "variables")
                                  if k in events})
  if status == "ok":
    result.update(compile_s=round(compile_s, 1),
                  memory=xla.memory_report(dump_dir))
  if own_dump:
    shutil.rmtree(dump_dir, ignore_errors=True)
  return result


def report(result, budgets):
  """The lines `synth-mtf fit` prints."""
  c, v, m = result["config"], result["variables"], result.get("memory")
  lines = [
      "model: %s, lengths %s, batch %d over mesh %s: %d per core%s, "
      "activations %s, vocabulary %d" % (
          c["model_type"], c["lengths"], c["batch_size"], c["mesh_shape"],
          c["batch_per_core"], "".join(
              " (batch split %d ways over %s)" % (s, m_)
              for _, m_, s in c["batch_split"]), c["activation_dtype"],
          c["vocab_size"])]
  if c["other_splits"]:
    lines.append(
        "not split here: %s. The layout splits these over the mesh; this "
        "compile keeps them whole, so parameters and their temporaries are "
        "counted as on one core holding all of them (an upper bound)." %
        ", ".join("%s over %s (%d ways)" % tuple(s) for s in c["other_splits"]))
  rows = [("parameters (from the graph)", v["param_bytes"]),
          ("optimizer slots (from the graph)", v["slot_bytes"])]
  if m:
    rows += [("XLA: inputs (variables, slots, features)", m["parameters"]),
             ("XLA: temporaries and outputs", m["total"] - m["parameters"]),
             ("XLA: total", m["total"])]
  width = max(len(r[0]) for r in rows)
  lines += ["%-*s %9.3f GiB" % (width, k, b / GIB) for k, b in rows]
  total = m["total"] if m else v["param_bytes"] + v["slot_bytes"]
  if m:
    lines.append("compile time: %.0f s" % result["compile_s"])
  else:
    lines.append("not compiled (%s): the variables alone are %.2f GiB" % (
        result["status"], total / GIB))
  for b in budgets:
    verdict = "fits" if total <= b * GIB and m else (
        "does NOT fit" if total > b * GIB else "unknown")
    lines.append("budget %g GiB: %s (%.0f%%)" % (b, verdict,
                                                100.0 * total / (b * GIB)))
  lines.append(NOTE)
  return "\n".join(lines)


def add_arguments(p):
  p.add_argument("--gin_file", action="append", default=[], required=True,
                 help="as for t5_mesh_transformer, e.g. models/t5.1.1.small.gin")
  p.add_argument("--gin_param", action="append", default=[])
  p.add_argument("--module_import", action="append", default=None,
                 help="as for t5_mesh_transformer (default: synth_mtf)")
  p.add_argument("--gin_location_prefix", action="append", default=[])
  for name in IGNORED_FLAGS:
    p.add_argument("--" + name, help=argparse.SUPPRESS)
  p.add_argument("--budget_gib", type=float, action="append", default=None,
                 help="memory per core to compare with (default 16 and 32: "
                 "TPU v3 and v4 HBM)")
  p.add_argument("--vocab_size", type=int, default=DEFAULT_VOCAB,
                 help="the vocabulary's size (default %d, T5's; fit reads no "
                 "vocabulary file)" % DEFAULT_VOCAB)
  p.add_argument("--keep_dump", default=None,
                 help="a directory to keep XLA's dump in (HLO and buffer "
                 "assignment), e.g. to read the largest buffers")


def cmd_fit(args):
  """The `synth-mtf fit` command (args from add_arguments)."""
  spec = dict(gin_file=args.gin_file, gin_param=args.gin_param,
              module_import=args.module_import or ["synth_mtf"],
              gin_location_prefix=args.gin_location_prefix,
              vocab_size=args.vocab_size)
  if args.keep_dump:
    os.makedirs(args.keep_dump, exist_ok=True)
  print("compiling one training step with XLA on this CPU (minutes for a "
        "T5-sized model)...", flush=True)
  try:
    result = measure(spec, dump_dir=args.keep_dump)
  except FitError as e:
    raise SystemExit("synth-mtf fit: error: %s" % e) from None
  print(report(result, args.budget_gib or [16.0, 32.0]))


if __name__ == "__main__":
  if len(sys.argv) == 3 and sys.argv[1] == "--child":
    sys.exit(child(json.loads(sys.argv[2])))
