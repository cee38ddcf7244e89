"""Gin-configured ablation sweeps through the stock CLI.

A sweep file (gin) lists the variants and the bindings to cross:

  import synth_mtf.sweep
  Sweep.base_gin_files = ['experiments/demo_reverse.gin']
  Sweep.variants = ['vanilla', 'R', 'D+V']     # labels of synth_mtf.variants
  Sweep.grid = {'d_model': [64, 128]}          # crossed with the variants
  Sweep.bindings = ['utils.run.train_steps = 300']

Variants are labels of the catalogue (`synth-mtf variants`; Sweep.kind picks
the encoder-decoder/LM files, 'bi', or the encoder-only ones,
'encoder_only'), or your own configs as {name: gin file}.

`synth-mtf sweep FILE --out_dir DIR` trains and evaluates each run in turn (one
t5_mesh_transformer process per run, so on a cluster each is one job: see
--only), skips runs that already have a result (so an interrupted sweep resumes;
a half-trained run resumes from its checkpoint, as the CLI does), and writes
DIR/results.csv, DIR/results.md and DIR/results.png. Every run's gin files and
bindings are parsed before the first run starts; when a run fails, the others
still run, the tables hold the finished ones, and the exit status is non-zero.

Jobs may share DIR (a shared disk, or gs://: every write goes through
tf.io.gfile). Each run is claimed (claims.py): one trainer per run, which dies
with its sweep; another sweep waits for runs held elsewhere. Each run dir
records what made it (run.json: variant, bindings, gin files' contents, eval
settings); a sweep under other settings refuses it, naming the change. The
tables are rebuilt from every run's result.json by one writer at a time.
"""

import csv
import hashlib
import io
import itertools
import json
import logging
import os
import re
import time
import traceback

import gin

import synth_mtf
from synth_mtf import checkpoints
from synth_mtf import claims
from synth_mtf import runner
from synth_mtf import tables
from synth_mtf import variants as catalogue

FIELDS = ["run", "variant", "bindings", "parameters", "steps", "steps_per_sec",
          "final_loss", "metric", "value"]


@gin.configurable
class Sweep(object):
  """What to run. See the module docstring."""

  def __init__(self, variants=gin.REQUIRED, base_gin_files=(), grid=None,
               bindings=(), eval_gin_files=("eval.gin", "greedy_decode.gin"),
               eval_bindings=("run.dataset_split = 'validation'",),
               metric=None, eval_steps=None, kind="bi", trainer=None):
    if not variants:
      raise ValueError("Sweep.variants is empty: list catalogue labels, e.g. "
                       "['vanilla', 'R'], or map a name to a model gin file, "
                       "e.g. {'R': 'models/synthesizer/random.gin'}.")
    # name -> (model gin file, the variant's own bindings)
    if isinstance(variants, dict):
      self.variants = {k: (f, []) for k, f in variants.items()}
    else:
      try:
        found = {v: catalogue.get(v) for v in variants}
        self.variants = {v: (c.gin_file(kind), list(c.bindings))
                         for v, c in found.items()}
      except ValueError as e:
        raise ValueError("Sweep.variants: %s" % e) from None
    self.base_gin_files = list(base_gin_files)
    self.grid = dict(grid or {})
    for name, values in self.grid.items():
      if not isinstance(values, (list, tuple)) or not values:
        raise ValueError("Sweep.grid[%r] must be a non-empty list of values, "
                         "got %r." % (name, values))
    self.bindings = list(bindings)
    self.eval_gin_files = list(eval_gin_files)
    self.eval_bindings = list(eval_bindings)
    self.metric = metric
    # Checkpoint steps to evaluate (a learning curve); None: the last only.
    # The run must keep those checkpoints (save_checkpoints_steps dividing
    # them, keep_checkpoint_max = None).
    self.eval_steps = sorted(eval_steps) if eval_steps else None
    # the command that runs the stock CLI (a list), e.g. a wrapper that runs
    # it in a container; None: t5_mesh_transformer beside this Python
    self.trainer = list(trainer) if trainer else None

  def runs(self):
    """[(run id, variant, variant gin file, [bindings])] in a fixed order;
    the bindings are the variant's own, then the grid's."""
    names = sorted(self.grid)
    out = []
    for variant, (gin_file, own) in self.variants.items():
      for values in itertools.product(*(self.grid[n] for n in names)):
        crossed = own + ["%s = %r" % (n, v) for n, v in zip(names, values)]
        run_id = _slug([variant] + ["%s=%s" % (n, v) for n, v in
                                    zip(names, values)])
        out.append((run_id, variant, gin_file, crossed))
    return out


def _slug(parts):
  return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", "__".join(parts))


def load(sweep_file, extra_bindings=()):
  """Parse a sweep file into a Sweep (gin is cleared before and after)."""
  gin.clear_config(clear_constants=True)
  try:
    gin.parse_config_files_and_bindings([sweep_file], list(extra_bindings))
    return Sweep()
  finally:
    gin.clear_config(clear_constants=True)


def _gfile():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.io.gfile


def _result(run_dir):
  """The run's result.json, or None."""
  return claims.read_json(os.path.join(run_dir, "result.json"))


def _holds_all(sweep, result):
  """Whether `result` holds what `sweep` asks (every one of its eval_steps):
  a sweep asking for later steps trains the run on."""
  asked = set(sweep.eval_steps or ()) if sweep.eval_gin_files else set()
  return asked <= {s for s, _ in result.get("curve") or ()}


def cached(sweep, run_dir):
  """The run's result.json if it holds what `sweep` asks, else None."""
  result = _result(run_dir)
  return result if result and _holds_all(sweep, result) else None


# ---- a run's identity: everything that changes what it trains or measures --

def _gin_search_path():
  """Where the CLI looks for a gin file, in gin's order."""
  from synth_mtf import model_graph  # pylint: disable=g-import-not-at-top
  return [""] + [synth_mtf.GIN_DIR] + model_graph.gin_search_paths()


def _gin_contents(names, found=None):
  """{gin file: sha256 of its text} of `names` and the files they include,
  each found as the CLI finds it."""
  found = {} if found is None else found
  search = _gin_search_path()
  for name in names:
    if name in found:
      continue
    where = [os.path.join(p, name) for p in ([""] if os.path.isabs(name)
                                             else search)]
    path = next((w for w in where if _gfile().exists(w)), None)
    if path is None:
      found[name] = None  # check_runs names it
      continue
    with _gfile().GFile(path) as f:
      text = f.read()
    found[name] = hashlib.sha256(text.encode()).hexdigest()[:16]
    _gin_contents(re.findall(r"^include\s+['\"]([^'\"]+)['\"]", text, re.M),
                  found)
  return found


def identity(sweep, variant, gin_file, crossed):
  """What makes the run what it is; a run dir holds the one it was made
  under (run.json), and a sweep under another refuses it."""
  return {"variant": variant,
          "gin files (contents)": _gin_contents(
              ["defaults.gin"] + sweep.base_gin_files + [gin_file]),
          "bindings": sweep.bindings + crossed,
          "eval gin files (contents)": _gin_contents(sweep.eval_gin_files),
          "eval bindings": sweep.eval_bindings, "metric": sweep.metric}


def _changes(old, new):
  """What differs between two identities, in words."""
  out = []
  for key in new:
    a, b = old.get(key), new[key]
    if a == b:
      continue
    if isinstance(b, dict) and isinstance(a, dict):
      out += ["%s %s" % (name, "added" if name not in a else "removed"
                         if name not in b else "changed")
              for name in sorted(set(a) | set(b)) if a.get(name) != b.get(name)]
    else:
      out.append("%s: %r -> %r" % (key, a, b))
  return out


def _record(run_dir):
  return claims.read_json(os.path.join(run_dir, "run.json"))


def stale(sweep, runs, out_dir):
  """'run: what changed' of each run whose dir was made under other
  settings (or by a synth-mtf that did not record them)."""
  problems = []
  for run_id, variant, gin_file, crossed in runs:
    run_dir = os.path.join(out_dir, run_id)
    if not _gfile().isdir(run_dir):
      continue
    record = _record(run_dir)
    new = identity(sweep, variant, gin_file, crossed)
    if record is None:
      made = [n for n in _gfile().listdir(run_dir)
              if n in ("result.json", "train.log")
              or checkpoints.STEP_RE.match(n)]
      if made:
        problems.append("  %s: made without a record of its settings (%s)"
                        % (run_id, ", ".join(sorted(made)[:3])))
    elif record != new:
      problems.append("  %s: %s" % (run_id, "; ".join(_changes(record, new))))
  return problems


# ---- one run ----------------------------------------------------------------

def run_one(sweep, run_id, variant, gin_file, crossed, out_dir, log=print,
            on_start=None):
  """Train and evaluate one run in out_dir/run_id (resuming what is there);
  on_start(pid) is told each trainer process it starts."""
  run_dir = os.path.join(out_dir, run_id)
  result_path = os.path.join(run_dir, "result.json")
  before = _result(run_dir)
  if before and _holds_all(sweep, before):
    log("[sweep] %s: done before, skipped" % run_id)
    return before
  _gfile().makedirs(run_dir)
  gin_files = sweep.base_gin_files + [gin_file]
  bindings = sweep.bindings + crossed
  t0 = time.time()
  # a run trained on (later eval_steps) keeps what it measured before at the
  # checkpoints training resumes after: they are not trained again
  start = _latest_step(run_dir)
  earlier = {s: v for s, v in (before or {}).get("curve") or ()
             if s <= start} if before else {}
  log("[sweep] %s: training%s" % (run_id, " on from step %d" % start
                                  if start else ""))
  train_path = os.path.join(run_dir, "train.log")
  # every attempt's output stays: steps/s and loss are the whole run's
  with _gfile().GFile(train_path, "a") as f:
    f.write("[sweep] attempt at %s from step %d\n" % (
        time.strftime("%Y-%m-%d %H:%M:%S"), start))
  runner.run_cli(runner.cli_command(run_dir, gin_files, bindings,
                                    sweep.trainer),
                 train_path, append=True, on_start=on_start)
  train_log = runner.read_log(train_path)
  result = {"run": run_id, "variant": variant, "bindings": "; ".join(crossed),
            "parameters": runner.checkpoint_parameters(run_dir),
            "steps_per_sec": runner.steps_per_second(train_log),
            "final_loss": runner.final_loss(train_log),
            "steps": _latest_step(run_dir), "metric": None, "value": None}
  if sweep.eval_gin_files:
    log("[sweep] %s: evaluating" % run_id)
    steps = sweep.eval_steps or [result["steps"]]
    todo = [s for s in steps if s not in earlier]
    missing = sorted(set(todo) - set(_checkpoint_steps(run_dir)))
    if missing:
      raise runner.CliError(
          "%s: no checkpoint at steps %s to evaluate (have %s); make "
          "utils.run.save_checkpoints_steps divide them and set "
          "utils.run.keep_checkpoint_max = None" % (
              run_id, missing, _checkpoint_steps(run_dir)))
    runner.run_cli(runner.cli_command(
        run_dir, gin_files + sweep.eval_gin_files,
        bindings + sweep.eval_bindings +
        ["eval_checkpoint_step = %r" % (todo if sweep.eval_steps
                                        else todo[0])], sweep.trainer),
                   os.path.join(run_dir, "eval.log"), on_start=on_start)
    eval_log = runner.read_log(os.path.join(run_dir, "eval.log"))
    found = runner.metrics(eval_log)
    chosen = sorted(n for n in found
                    if sweep.metric is None or sweep.metric in n)
    if not chosen:
      raise runner.CliError("%s: the evaluation reported no metric%s; see %s"
                            % (run_id, " matching %r" % sweep.metric
                               if sweep.metric else "",
                               os.path.join(run_dir, "eval.log")))
    result["metric"] = chosen[0]
    if earlier and before.get("metric") != chosen[0]:
      raise runner.CliError(
          "%s: evaluated %s before (%s) and %s now; delete %s to evaluate "
          "every step again" % (run_id, before.get("metric"), result_path,
                                chosen[0], result_path))
    curve = {**earlier, **runner.metric_curve(eval_log, chosen[0])}
    absent = sorted(set(steps) - set(curve))
    if absent:
      raise runner.CliError("%s: the evaluation reported %s at steps %s but "
                            "not at %s; see %s" % (
                                run_id, chosen[0], sorted(curve), absent,
                                os.path.join(run_dir, "eval.log")))
    result["curve"] = [[s, curve[s]] for s in steps]
    result["value"] = curve[steps[-1]]
  # a resumed run adds this invocation to the time recorded before; time spent
  # by an invocation stopped before it wrote result.json is not counted
  result["seconds"] = round(time.time() - t0 + (
      (before or {}).get("seconds", 0) if start else 0), 1)
  # atomic: a result is complete or absent
  claims.write_atomic(result_path, json.dumps(result, indent=1))
  return result


_checkpoint_steps = checkpoints.steps
_latest_step = checkpoints.latest_step


# ---- tables: rebuilt from every run's own result.json ----------------------

def collect(sweep, runs, out_dir):
  """(results in the sweep's order, run ids without a result): only results
  made under this sweep's settings count."""
  results, missing = [], []
  for run_id, variant, gin_file, crossed in runs:
    run_dir = os.path.join(out_dir, run_id)
    result = cached(sweep, run_dir)
    record = _record(run_dir)
    if result and record == identity(sweep, variant, gin_file, crossed):
      results.append(result)
    else:
      missing.append(run_id + (" (made under other settings)"
                               if record and result else ""))
  return results, missing


def write_tables(results, out_dir, title, missing=()):
  """results.csv, .md, .png, each written whole or not at all."""
  buf = io.StringIO()
  w = csv.DictWriter(buf, FIELDS, extrasaction="ignore", lineterminator="\r\n")
  w.writeheader()
  w.writerows(results)
  claims.write_atomic(os.path.join(out_dir, "results.csv"), buf.getvalue())
  md = "# %s\n\n" % title + tables.markdown(
      ["variant", "bindings", "parameters", "steps", "steps/s", "final loss",
       "metric", "value"],
      [[r["variant"], r["bindings"] or "-", "{:,}".format(r["parameters"]),
        r["steps"], _fmt(r["steps_per_sec"]), _fmt(r["final_loss"], 4),
        r["metric"] or "-", _fmt(r["value"])] for r in results],
      align="llrrrrlr") + "\n"
  if missing:
    md += "\n%d of %d runs; not finished yet: %s\n" % (
        len(results), len(results) + len(missing), ", ".join(missing))
  claims.write_atomic(os.path.join(out_dir, "results.md"), md)
  claims.write_atomic(os.path.join(out_dir, "results.png"),
                      _plot(results, title))


def _fmt(x, digits=2):
  return "-" if x is None else ("%%.%df" % digits) % x


def _plot(results, title):
  """The PNG's bytes."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  labels = [r["run"].replace("__", "\n") for r in results]
  fig, axes = plt.subplots(1, 2, figsize=(max(6, 1.3 * len(results) + 2), 4))
  for ax, key, name in [(axes[0], "value", results[0]["metric"] or "metric"),
                        (axes[1], "steps_per_sec", "training steps/s")]:
    ax.bar(range(len(results)), [r[key] or 0 for r in results], color="#4C72B0")
    ax.set_xticks(range(len(results)))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_title(name, fontsize=9)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  png = io.BytesIO()
  fig.savefig(png, format="png", dpi=100)
  plt.close(fig)
  return png.getvalue()


def check_runs(sweep, runs):
  """Parse each run's gin files and bindings (training and evaluation) as the
  CLI will, so a missing file or a bad binding stops the sweep before its
  first run instead of when the sweep reaches that run."""
  from synth_mtf import model_graph  # pylint: disable=g-import-not-at-top
  import t5.models.mesh_transformer  # noqa: F401  pylint: disable=g-import-not-at-top
  import t5.models.mtf_model  # noqa: F401  pylint: disable=g-import-not-at-top
  for path in model_graph.gin_search_paths():
    gin.add_config_file_search_path(path)
  problems = []
  # gin logs an ERROR for each search path a file is not in: noise here
  logging.disable(logging.ERROR)
  try:
    for run_id, _, gin_file, crossed in runs:
      gin.clear_config(clear_constants=True)
      try:
        gin.parse_config_files_and_bindings(
            ["defaults.gin"] + sweep.base_gin_files + [gin_file] +
            sweep.eval_gin_files,
            sweep.bindings + crossed + sweep.eval_bindings,
            finalize_config=False)
      except Exception as e:  # pylint: disable=broad-except
        problems.append("  %s: %s: %s" % (run_id, type(e).__name__, e))
  finally:
    logging.disable(logging.NOTSET)
    gin.clear_config(clear_constants=True)
  if problems:
    raise SystemExit(
        "[sweep] %d of %d runs have a bad config; nothing was run. Fix "
        "Sweep.variants / base_gin_files / eval_gin_files (gin files, found on "
        "gin's search path) or the bindings (Sweep.bindings, grid, "
        "eval_bindings, --gin_param):\n%s" % (len(problems), len(runs),
                                              "\n".join(problems)))


def _latest_log(run_dir):
  logs = [os.path.join(run_dir, n) for n in ("train.log", "eval.log")]
  logs = [p for p in logs if _gfile().exists(p)]
  return max(logs, key=lambda p: _gfile().stat(p).mtime_nsec) if logs else (
      run_dir)


POLL = 2.0  # seconds between looks at runs another process holds


def _claimed_run(sweep, run, out_dir, log):
  """run_one under the run's claim: its result, or None while another
  process holds the run."""
  run_id = run[0]
  run_dir = os.path.join(out_dir, run_id)
  new = identity(sweep, *run[1:])
  done = cached(sweep, run_dir)
  if done and _record(run_dir) == new:
    log("[sweep] %s: done before, skipped" % run_id)
    return done
  _gfile().makedirs(run_dir)
  path = os.path.join(run_dir, "claim.json")
  mine = claims.take(path, log)
  if mine is None:
    return None
  try:
    record = _record(run_dir)
    if record is None:
      claims.write_atomic(os.path.join(run_dir, "run.json"),
                          json.dumps(new, indent=1))
    elif record != new:  # another sweep made it meanwhile, otherwise
      raise runner.CliError("%s was made under other settings: %s" % (
          run_dir, "; ".join(_changes(record, new))))

    def started(pid):  # a rerun stops it if we die without taking it along
      mine.update(trainer_pid=pid, trainer_start=claims.process_start(pid))
      claims.update(path, mine)
    return run_one(sweep, *run, out_dir=out_dir, log=log, on_start=started)
  finally:
    claims.release(path, mine)


def main(args):
  sweep = load(args.sweep_file, args.gin_param or ())
  every = sweep.runs()
  runs = every
  if args.only:
    unknown = set(args.only) - {r[0] for r in runs}
    if unknown:
      raise SystemExit("--only names no run of this sweep: %s. Runs: %s"
                       % (sorted(unknown), [r[0] for r in runs]))
    runs = [r for r in runs if r[0] in args.only]
  out_dir = args.out_dir
  changed = stale(sweep, runs, out_dir)
  if changed:
    raise SystemExit(
        "[sweep] %d of %d runs in %s were made under other settings than "
        "this sweep's; nothing was run:\n%s\nTo redo a run under these "
        "settings, delete its directory (move it elsewhere to keep it); to "
        "keep its result, sweep with the settings it was made under, or into "
        "another --out_dir." % (len(changed), len(runs), out_dir,
                                "\n".join(changed)))
  check_runs(sweep, [r for r in runs if not cached(
      sweep, os.path.join(out_dir, r[0]))])
  _gfile().makedirs(out_dir)
  print("[sweep] %d runs -> %s" % (len(runs), out_dir), flush=True)
  log = lambda m: print(m, flush=True)  # pylint: disable=unnecessary-lambda-assignment
  if args.max_runs is not None and args.max_runs < len(runs):
    print("[sweep] stopping after %d runs (--max_runs)" % args.max_runs)
    runs = runs[:args.max_runs]
  failed, todo, told = [], list(runs), None
  while todo:
    held = []
    for run in todo:
      try:
        if _claimed_run(sweep, run, out_dir, log) is None:
          held.append(run)
      except Exception as e:  # pylint: disable=broad-except
        # one failed run must not cost the others, nor the table of them
        print("[sweep] %s FAILED: %s" % (run[0], e if isinstance(
            e, runner.CliError) else traceback.format_exc()), flush=True)
        failed.append((run[0], _latest_log(os.path.join(out_dir, run[0]))))
    if held and told != held:
      print("[sweep] waiting for %d runs another process holds: %s (a "
            "holder on a machine that is gone: delete its claim.json)" % (
                len(held), ", ".join("%s (%s)" % (r[0], claims.describe(
                    claims.read_json(os.path.join(out_dir, r[0],
                                                  "claim.json")) or {}))
                                     for r in held)), flush=True)
      told = held
    if held:
      time.sleep(POLL)
    todo = held
  # the tables hold every run of the sweep that has a result, whichever
  # process made it; one writer at a time, so the last holds them all
  lock = os.path.join(out_dir, "tables.claim")
  mine = claims.wait(lock, log)
  try:
    results, missing = collect(sweep, every, out_dir)
    if results:
      write_tables(results, out_dir, os.path.basename(args.sweep_file),
                   missing)
      print("[sweep] wrote results.csv, results.md, results.png in %s (%d of "
            "%d runs%s)" % (out_dir, len(results), len(every),
                            "; not finished: %s" % ", ".join(missing)
                            if missing else ""), flush=True)
  finally:
    claims.release(lock, mine)
  if failed:
    raise SystemExit("[sweep] %d runs failed (the sweep resumes them when "
                     "run again):\n%s" % (len(failed), "\n".join(
                         "  %s: see %s" % f for f in failed)))
