"""The quality benchmark's runs: the plan (which dataset, variant and seed, in
which order), training and evaluating each run through the sweep runner,
resuming from the committed results, merging the results of a benchmark
split across machines, and the pretrained checkpoints kept with the tables.
"""

import fcntl
import functools
import math
import os
import shutil

import benchlib
from quality_data import datasets, model_dirs
from quality_rows import THREE_SEEDS, VARIANTS, VARIATIONS
from synth_mtf import checkpoints

SEEDED = ["utils.run.train_dataset_fn = "
          "@synth_mtf.reproducible.seeded_train_dataset_fn"]


def plan(kind, data, variants, seeds, only):
  """[(dataset, variant, seed)] in the order they run: every variant's first
  two seeds before any third seed, ours before the stock rows, so that a
  partial benchmark already covers the table."""
  all_variants = VARIANTS[kind]
  unknown = set(variants or ()) - set(all_variants)
  if unknown:
    raise SystemExit("unknown variants %s; choose from %s"
                     % (sorted(unknown), list(all_variants)))
  names = list(variants or all_variants)
  order = list(datasets(kind, data))
  out = []
  for dataset in order:
    if only and dataset not in only:
      continue
    for i, v in enumerate(names):
      # a main row's finetuning ("R/pretrained", "R/scratch") has 3 seeds;
      # every pretrained variant is a main row
      main_row = (v.split("/")[0] if kind == "finetune" else v) in THREE_SEEDS
      chosen = seeds or ([1, 2, 3] if main_row else [1, 2])
      for s in chosen:
        extra = v.startswith("stock_") or v.endswith(VARIATIONS)
        out.append(((order.index(dataset), 2 * extra + (s > 2), s, i),
                    (dataset, v, s)))
  return [r for _, r in sorted(out)]


def evaluated(r):
  """The steps a committed run was evaluated at, counted from the start of
  its own training ([] for a snapshot without a curve)."""
  return [step - r.get("offset", 0) for step, _ in r.get("curve", [])]


def off_schedule(runs, eval_every):
  """The names of `runs` not evaluated every `eval_every` steps (any length
  of that schedule: a dataset may be trained on further than the others)."""
  steps = [(r["run"], evaluated(r)) for r in runs]
  return sorted(run for run, s in steps if not s or s != list(
      range(eval_every, eval_every * len(s) + 1, eval_every)))


def merge(out, others, kinds, eval_every):
  """{kind: (its runs, [(dir, command)], whether another dir added or
  extended a run)} of --out's results with those of `others` (the --out
  dirs of one benchmark split across processes or machines, e.g. by
  --variants); a run in several is taken from the one trained furthest, on a
  tie from the first (--out's). Kinds none of them has are left out."""
  key = lambda r: (r["dataset"], r["variant"], r["seed"])
  empty = [d for d in others if not any(os.path.exists(
      os.path.join(d, "quality_%s.json" % k)) for k in kinds)]
  if empty:
    raise SystemExit("--merge %s: no %s there; pass the --out of a "
                     "`quality.py %s` run" % (empty[0], " or ".join(
                         "quality_%s.json" % k for k in kinds), kinds[0]))
  merged = {}
  for kind in kinds:
    runs, sources, changed = {}, [], False
    for d in [out] + others:
      results = benchlib.read_json(os.path.join(d, "quality_%s.json" % kind),
                                   None)
      if not results:
        continue
      sources.append((d, results["stamp"]["command"]))
      for r in results["runs"]:
        if key(r) not in runs or (evaluated(r)[-1:] >
                                  evaluated(runs[key(r)])[-1:]):
          runs[key(r)] = r
          changed = changed or d != out
    runs = list(runs.values())
    vocabularies = {r.get("vocabulary") for r in runs}
    if len(vocabularies) > 1:
      raise SystemExit("--merge: the %s runs of %s are of more than one "
                       "vocabulary; merge only runs of one benchmark's "
                       "settings" % (kind, [d for d, _ in sources]))
    other = off_schedule(runs, eval_every)
    if other:
      raise SystemExit("--merge: %s runs evaluated at other steps than "
                       "every %d (e.g. %s); merge only runs of one "
                       "benchmark's settings" % (kind, eval_every, other[:3]))
    if runs:
      merged[kind] = (runs, sources, changed)
  return merged


def run(kind, data, runs, steps, eval_every, dropout, work_dir, on_result,
        committed=(), pretrained=None, pieces=None, in_legs=False):
  """Train and evaluate `runs` in order; a run found in `committed` (the
  results JSON of an earlier invocation, with the same eval steps) is taken
  from there, so the benchmark resumes from what was committed even on a
  machine without the earlier model dirs; one committed with fewer steps
  (the same eval steps so far) is trained on from its model dir to `steps`,
  or without it anew: in one leg, or with in_legs in the same two as one
  trained on (to its committed step, then on).
  pretrained: fn(variant, seed) ->
  (checkpoint, its step, its validation perplexity), for the finetune kind's
  /pretrained rows. pieces:
  (path, sha256) of the SentencePiece model (train_pieces()), None for bytes;
  runs of another vocabulary are neither taken nor resumed."""
  specs = datasets(kind, data, pieces and pieces[0])
  vocabulary = pieces and pieces[1]
  eval_steps = list(range(eval_every, steps + 1, eval_every))
  if not eval_steps or eval_steps[-1] != steps:
    raise SystemExit("--steps %d must be a multiple of --eval_every %d"
                     % (steps, eval_every))
  check_data(specs)
  by_key = checked_committed(committed, vocabulary, eval_every)
  evaluated_steps = {k: evaluated(r) for k, r in by_key.items()}
  finished = {k: r for k, r in by_key.items()
              if evaluated_steps[k][:len(eval_steps)] == eval_steps}
  # committed runs outside this invocation's plan stay in the tables, and so
  # do shorter ones until they are extended
  planned = set(runs)
  kept = [r for k, r in by_key.items() if k not in planned]
  shorter = {k: r for k, r in by_key.items()
             if k in planned and k not in finished}
  # committed runs of the plan, not reached yet
  waiting = {k: r for k, r in finished.items() if k in planned}
  train = functools.partial(train_run, kind, specs, steps, eval_steps,
                            eval_every, dropout, work_dir, vocabulary,
                            pretrained, in_legs=in_legs)
  rows = []
  for key in runs:
    if key in finished:
      last = evaluated_steps[key][-1]
      print("[quality] %s %s seed %d: committed before, skipped%s" % (
          *key, "" if last == steps else " (committed to step %d, more than "
          "--steps %d: kept as committed)" % (last, steps)), flush=True)
      rows.append(waiting.pop(key))
      continue
    rows.append(train(key, evaluated_steps[key][-1] if shorter.pop(key, None)
                      else None))
    # every committed run stays in the tables, reached or not
    on_result(rows + list(waiting.values()) + kept + list(shorter.values()))
  if rows and all(k in finished for k in runs):
    on_result(rows + kept)  # nothing new: tables as committed, restamped
  return rows


def check_data(specs):
  """Stop, naming --data, if a dataset's file is missing."""
  for bindings, _, _, _ in specs.values():
    for path in [b.split(" = ")[1].strip("'") for b in bindings
                 if "_path" in b]:
      if not os.path.exists(path):
        raise SystemExit("missing %s: pass --data (the folder of "
                         "shared/data's README)" % path)


def checked_committed(committed, vocabulary, eval_every):
  """{(dataset, variant, seed): run} of the committed runs, after checking
  that they are of this vocabulary and evaluation schedule."""
  other = sorted(r["run"] for r in committed
                 if r.get("vocabulary") != vocabulary)
  if other:
    raise SystemExit("the committed results (--out) hold runs of another "
                     "vocabulary than %s (e.g. %s): pass another --out"
                     % (vocabulary and "pieces " + vocabulary[:12] or "bytes",
                        other[:3]))
  other = off_schedule(committed, eval_every)
  if other:
    raise SystemExit("the committed results (--out) hold runs evaluated at "
                     "other steps than every %d (e.g. %s): pass another --out "
                     "for these settings" % (eval_every, other[:3]))
  return {(r["dataset"], r["variant"], r["seed"]): r for r in committed}


def train_run(kind, specs, steps, eval_steps, eval_every, dropout, work_dir,
              vocabulary, pretrained, key, leg, in_legs=False):
  """Train and evaluate one (dataset, variant, seed) to `steps`; leg: the
  step its committed result reached (trained on from its model dir, or
  anew without it), None for a new run. -> its result."""
  from synth_mtf import sweep as sweep_lib  # pylint: disable=g-import-not-at-top
  dataset, variant, seed = key
  gin_file, extra = VARIANTS[kind][variant]
  offset, start = 0, {}
  if variant.endswith("/pretrained"):  # init_checkpoint's step comes over
    checkpoint, offset, perplexity = pretrained(variant.split("/")[0], seed)
    extra = extra + ["utils.run.init_checkpoint = %r" % checkpoint]
    # which pretraining it started from: one pretrained again on another
    # machine (model dirs do not travel) differs in the last bits
    start = {"pretrained_perplexity": round(perplexity, 4)}
  sweep_to = functools.partial(
      sweep_of, variant, gin_file, seed, specs[dataset], extra, dropout,
      eval_every, offset, eval_steps)
  d = model_dirs(work_dir, dataset, vocabulary)
  os.makedirs(d, exist_ok=True)
  (run_id, v, f, crossed), = sweep_to(steps).runs()  # the model dir's name
  log = lambda m: print(m, flush=True)
  if leg is not None:
    # run_one trains it on: T5 resumes from the model dir's last checkpoint
    # (under a constant learning rate the same optimisation; the input
    # pipeline starts its seeded order again); without the dir, anew
    resumed = os.path.isdir(os.path.join(d, run_id))
    print("[quality] %s %s seed %d: committed to step %d, %s to %d"
          % (dataset, variant, seed, leg, "extended" if resumed else
             "trained anew (its model dir is not on this machine)%s" % (
                 " in the same two legs: to %d, then on" % leg
                 if in_legs else ""), steps), flush=True)
    if in_legs and not resumed:
      sweep_lib.run_one(sweep_to(leg), run_id, v, f, crossed, d, log=log)
  r = sweep_lib.run_one(sweep_to(steps), run_id, v, f, crossed, d, log=log)
  r.update(dataset=dataset, seed=seed, offset=offset, **start)
  if vocabulary:
    r.update(vocabulary=vocabulary)
  return r


def sweep_of(variant, gin_file, seed, spec, extra, dropout, eval_every, offset,
          eval_steps, last):
  """The sweep of one run trained to step `last` (after `offset` steps of
  pretraining), evaluated at the eval steps to it."""
  from synth_mtf import sweep as sweep_lib  # pylint: disable=g-import-not-at-top
  bindings, eval_files, eval_bindings, metric = spec
  return sweep_lib.Sweep(
      variants={variant: gin_file},
      base_gin_files=["experiments/bench_small.gin"],
      grid={"seeded_train_dataset_fn.seed": [seed]},
      bindings=bindings + extra + SEEDED + [
          "dropout_rate = %s" % dropout,
          "utils.run.train_steps = %d" % (offset + last),
          "utils.run.save_checkpoints_steps = %d" % eval_every,
          # checkpoints are written at the end of a loop (100 steps by
          # default): make the loops end on every eval step
          "utils.run.iterations_per_loop = %d" % math.gcd(eval_every, 100),
          "utils.run.keep_checkpoint_max = None"],
      eval_gin_files=eval_files,
      eval_bindings=[
          "run.dataset_split = 'validation'",
          "utils.get_variable_dtype.activation_dtype = 'float32'"]
      + eval_bindings, metric=metric,
      eval_steps=[offset + step for step in eval_steps if step <= last])



def hold_tables(out, kind):
  """Lock `out`'s tables of `kind` for this process: each invocation rewrites
  them from the runs it has, so a second one of the same kind would drop the
  first one's runs. Two kinds (lm beside pretrain) may share `out`.
  -> the open lock file (held until it is closed or the process ends)."""
  lock = open(os.path.join(out, ".quality_%s.lock" % kind), "w")
  try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    lock.close()
    raise SystemExit(
        "another `quality.py %s` is writing its tables in %s (each rewrites "
        "them from the runs it has, so one would drop the other's): wait "
        "for it, or pass another --out" % (kind, out)) from None
  return lock


def has_checkpoint(run_dir, step):
  """Whether run_dir holds a finished run's checkpoint at `step`."""
  return (os.path.exists(checkpoints.path(run_dir, step) + ".index")
          and os.path.exists(os.path.join(run_dir, "result.json")))


def keep_checkpoint(run_dir, step, kept):
  """Copy what init_checkpoint reads of run_dir's checkpoint at `step` (its
  index and data, not the graph) and the run's result.json to `kept`, whole
  or not at all (a copy stopped half way is not taken for one)."""
  prefix = os.path.basename(checkpoints.path(run_dir, step)) + "."
  tmp = kept + ".tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  for name in os.listdir(run_dir):
    if name == "result.json" or (name.startswith(prefix) and
                                 not name.endswith(".meta")):
      shutil.copy(os.path.join(run_dir, name), tmp)
  shutil.rmtree(kept, ignore_errors=True)
  os.replace(tmp, kept)


def restore_checkpoint(kept, step, run_dir):
  """A model dir that T5 trains on from kept's checkpoint at `step`: its
  files (result.json holds the curve so far) and the state file naming it."""
  tmp = run_dir + ".tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  shutil.copytree(kept, tmp)
  with open(os.path.join(tmp, "checkpoint"), "w") as f:
    f.write('model_checkpoint_path: "%s"\n' % os.path.basename(
        checkpoints.path(run_dir, step)))
  os.replace(tmp, run_dir)
