"""Quality at small scale on real text: learning curves, every variant trained
the same way.

  python bench/quality.py lm  [--data ../shared/data] [--steps 3000]
  python bench/quality.py cls [--data ../shared/data] [--steps 2000]
  python bench/quality.py pretrain [--pretrain_steps 2000] [--steps 2000]
                                   [--pretrain_table_steps 4000]

lm:  WikiText-2 language modelling, decoder-only, byte level: train on the test
     split, validation perplexity per byte (Table 2's rows: vanilla, R, Fix,
     FR, D, FD, R+D, R+V, D+V).
cls: encoding-only classification (Table 7's rows: vanilla, Linformer, R,
     FR, FR+V, D, in the encoder), SST-2 (train / dev) and AG News (first 6,600
     rows train, last 1,000 eval), accuracy.
pretrain: a small Table 5/6 (the paper's and Narang et al.'s protocol): T5's
     span corruption on the WikiText-2 text for vanilla, R, FR, D, R+V
     and D+V (encoder-decoder), then finetuning on SST-2 and AG News from each
     checkpoint, next to the same models trained from scratch; one variant
     after the other. One pretraining (seed 1) for every finetuning seed: its
     checkpoint is kept with the tables (--out's checkpoints/, 2.8 MB), so
     that a finetuning carried over to another machine starts from it too.
     Pretraining seeds 2 and 3 run after all finetuning: they give the
     pretraining table (the paper's Table 4, Narang et al.'s pretraining
     loss) a seed spread; then every pretraining seed is trained on to
     --pretrain_table_steps (seed 1 from its kept checkpoint where its model
     dir is gone), as that table's orders still move at --pretrain_steps.
lm and cls add mesh-tensorflow's own Synthesizer (the authors' release) as stock_*
rows in its modes, at our model's heads and key size.

Every run is evaluated at every --eval_every steps (a learning curve), with
T5's dropout_rate 0.1 for all variants (the training sets are small: the runs
overfit without it). Seeds: 3 for vanilla, R, FR, D, R+V and D+V (their
finetuning too), 2 for the rest (--seeds overrides). Each (variant, seed) is
one run of the stock CLI through the sweep runner, with a seeded input
function (seeded init and data); finished runs are skipped, so an interrupted
benchmark resumes, and the tables are rewritten after every run. A larger
--steps trains committed runs on from their model dirs (with --datasets, one
dataset only: the others stay as they are). Writes, stamped with command,
commit and machine: <kind>.csv (one row per dataset, variant, seed, step),
<kind>.md (final and best step, mean and spread, ranking by step, and each
pair that the paper or Narang et al. order checked against the seed spread:
holds, reversed or within the spread, and since which step) and <kind>.png
(metric vs step, seed spread as a band).

The benchmark is split by concern: quality_rows.py (the rows and the
published orders), quality_data.py (datasets, word pieces), quality_runs.py
(the plan, training, resume, merge, kept checkpoints), quality_report.py
(tables, seed-spread statistics, plots); this file holds the command line
and the stages of each kind.
"""

import argparse
import functools
import math
import os

import benchlib
import quality_data
import quality_report
import quality_runs
from quality_rows import PRETRAIN_VARIANTS
from synth_mtf import checkpoints


def main(argv=None):
  args = parser().parse_args(argv)
  os.makedirs(args.out, exist_ok=True)
  with quality_runs.hold_tables(args.out, args.kind):
    run_stages(args)


def parser():
  """The command line of main()."""
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("kind", choices=["lm", "cls", "pretrain"],
                 help="pretrain: span corruption, then finetuning (its own "
                 "tables quality_pretrain.* and quality_finetune.*)")
  p.add_argument("--data", default=os.path.join(benchlib.ROOT, "..", "shared",
                                                "data"))
  p.add_argument("--seeds", type=int, nargs="+", default=None,
                 help="the same seeds for every variant (default: 3 for the "
                 "main rows, 2 for the rest); pretrain: the finetuning's")
  p.add_argument("--pretrain_seeds", type=int, nargs="+", default=[1, 2, 3],
                 help="pretrain: the span-corruption seeds; every finetuning "
                 "seed starts from the first one's checkpoint, the others "
                 "(run after all finetuning) give the pretraining table its "
                 "spread")
  p.add_argument("--steps", type=int, default=None,
                 help="training (finetuning) steps (default: lm 3000, cls "
                 "and finetuning 2000); more than the committed runs have "
                 "trains them on from their model dirs, fewer keeps them "
                 "as committed")
  p.add_argument("--pretrain_steps", type=int, default=2000,
                 help="pretrain: the step every finetuning starts from")
  p.add_argument("--pretrain_table_steps", type=int, default=4000,
                 help="pretrain: last of all, every pretraining seed is "
                 "trained on to this step for the pretraining table (its "
                 "orders still move at --pretrain_steps)")
  p.add_argument("--eval_every", type=int, default=250)
  p.add_argument("--dropout", type=float, default=0.1)
  p.add_argument("--variants", default=None,
                 help="comma-separated subset (default: all of the table; "
                 "pretrain: the base names, e.g. R,D+V)")
  p.add_argument("--datasets", default=None,
                 help="comma-separated subset (cls, finetuning: sst2,ag_news)")
  p.add_argument("--out", default=os.path.join(benchlib.RESULTS, "quality"),
                 help="tables; runs already in its JSON are not run again "
                 "(use another --out for other settings)")
  p.add_argument("--work_dir", default=os.path.join(benchlib.ROOT, "runs",
                                                    "quality"),
                 help="model dirs (not committed); finished runs are reused")
  p.add_argument("--merge", nargs="+", default=None, metavar="OUT",
                 help="tables only, nothing trained: add the runs of these "
                 "other --out dirs (one benchmark split across processes "
                 "or machines, e.g. by --variants, each with its own --out) "
                 "to --out's and rewrite its tables; a run in several is "
                 "taken from the one trained furthest")
  return p


def run_stages(args):
  """Every stage of the kind main() parsed, its tables rewritten after each
  run."""
  bench = Benchmark(args)
  if args.merge:  # tables only: nothing is trained
    bench.merge_tables()
  else:
    bench.train()


def stages_of(args):
  """[(kind, steps, variants, seeds)] in the order they run. pretrain: each
  variant's pretraining, then its finetuning (Benchmark.pretrained() keeps
  the checkpoint with the tables, for the machines that follow); the other
  pretraining seeds last: they serve the pretraining table alone."""
  variants = args.variants.split(",") if args.variants else None
  if args.kind != "pretrain":
    return [(args.kind, args.steps or {"lm": 3000, "cls": 2000}[args.kind],
             variants, args.seeds)]
  first, others = args.pretrain_seeds[0], args.pretrain_seeds[1:]
  names = variants or list(PRETRAIN_VARIANTS)
  stages = [stage for v in names for stage in [
      ("pretrain", args.pretrain_steps, [v], [first]),
      ("finetune", args.steps or 2000, ["%s/%s" % (v, how) for how in (
          "pretrained", "scratch")], args.seeds)]]
  if others:
    stages.append(("pretrain", args.pretrain_steps, names, others))
  if args.pretrain_table_steps > args.pretrain_steps:
    # the pretraining table's orders still move at --pretrain_steps: every
    # seed trained on (finetuning keeps starting from --pretrain_steps)
    stages.append(("pretrain", args.pretrain_table_steps, names,
                   args.pretrain_seeds))
  return stages


class Benchmark:
  """One invocation: its stages, what each kind's tables count as planned,
  and the pretrained checkpoints its finetuning starts from."""

  def __init__(self, args):
    self.args = args
    self.data = os.path.abspath(args.data)
    self.info = benchlib.stamp()
    self.stages = stages_of(args)
    self.first = args.pretrain_seeds[0]  # every finetuning starts from it
    self.pieces = None  # (path, sha256) of the word pieces, once trained

  def plan_of(self, kind, names, seeds):
    only = self.args.datasets
    return quality_runs.plan(kind, self.data, names, seeds,
                             only.split(",") if only and kind != "pretrain"
                             else None)

  def planned(self, kind):
    """The tables count what is done of their kind's whole plan."""
    return list(dict.fromkeys(r for k, _, ns, ss in self.stages if k == kind
                              for r in self.plan_of(k, ns, ss)))

  def steps(self, kind):
    """The step the kind's tables count a run done at."""
    return max(st for k, st, _, _ in self.stages if k == kind)

  def merge_tables(self):
    """Rewrite --out's tables with the runs of the --merge dirs."""
    args = self.args
    kinds = list(dict.fromkeys(k for k, _, _, _ in self.stages))
    for kind, (runs, sources, changed) in quality_runs.merge(
        args.out, args.merge, kinds, args.eval_every).items():
      if not changed:
        print("[quality] %s: the --merge dirs add nothing; its tables are "
              "as they were" % kind, flush=True)
        continue
      # the stamp names the invocations that trained the runs merged in
      command = "%s; merged with the runs of %s" % (
          self.info["command"], "; ".join(c for d, c in sources
                                          if d != args.out))
      quality_report.summarize(kind, runs, args.out,
                               dict(self.info, command=command),
                               self.planned(kind), self.steps(kind),
                               args.dropout)

  def train(self):
    """Run every stage, resuming from --out's committed results."""
    args = self.args
    if args.kind != "lm":
      self.pieces = quality_data.train_pieces(self.data, args.work_dir)
    for kind, steps, names, seeds in self.stages:
      results = os.path.join(args.out, "quality_%s.json" % kind)
      committed = benchlib.read_json(results, {"runs": []})["runs"]
      if kind == "pretrain" and steps > args.pretrain_steps:
        self.restore_first_seed(committed, steps, names)
      report = functools.partial(
          quality_report.summarize, kind, out=args.out, info=self.info,
          planned=self.planned(kind), steps=steps, dropout=args.dropout)
      quality_runs.run(
          kind, self.data, self.plan_of(kind, names, seeds), steps,
          args.eval_every, args.dropout, os.path.join(args.work_dir, kind),
          report, committed, self.pretrained, self.pieces,
          # the pretraining table's seeds are all trained in two legs (seed
          # 1 from its kept checkpoint where its model dir is gone)
          in_legs=kind == "pretrain")

  def restore_first_seed(self, committed, steps, names):
    """Before the first pretraining seed is trained on as the others are,
    from --pretrain_steps: on a machine without its model dir, restore it
    from the kept checkpoint (which pretrained() makes again if it is gone
    too)."""
    reached = {r["variant"] for r in committed
               if r["seed"] == self.first and r.get("curve") and
               r["curve"][-1][0] >= steps}
    for variant in [v for v in names if v not in reached]:
      kept, run_dir = self.kept_run(variant)
      if not os.path.isdir(run_dir):
        self.pretrained(variant, self.first)
      if not os.path.isdir(run_dir):
        quality_runs.restore_checkpoint(kept, self.args.pretrain_steps,
                                        run_dir)

  def kept_run(self, variant):
    """(the kept checkpoint's dir, the model dir) of `variant`'s pretraining
    with the first of --pretrain_seeds."""
    from synth_mtf import sweep as sweep_lib  # pylint: disable=g-import-not-at-top
    (run_id, _, _, _), = sweep_lib.Sweep(
        variants={variant: PRETRAIN_VARIANTS[variant][0]},
        grid={"seeded_train_dataset_fn.seed": [self.first]}).runs()
    return tuple(os.path.join(quality_data.model_dirs(
        os.path.join(top, sub), "span_corruption", self.pieces[1]), run_id)
                 for top, sub in ((self.args.out, "checkpoints"),
                                  (self.args.work_dir, "pretrain")))

  def pretrained(self, variant, seed):
    """The span-corruption checkpoint of `variant` (the first of
    --pretrain_seeds for every finetuning seed), its step and its
    validation perplexity there. It is kept under --out (committed with the
    tables: model dirs do not outlive a machine, and a variant's finetuning
    may span machines), so that every seed starts from the same one;
    pretrained again only if neither that nor its model dir is there."""
    del seed
    step = self.args.pretrain_steps
    kept, run_dir = self.kept_run(variant)
    if not quality_runs.has_checkpoint(kept, step):
      if not quality_runs.has_checkpoint(run_dir, step):
        quality_runs.run(
            "pretrain", self.data, [("span_corruption", variant, self.first)],
            step, self.args.eval_every, self.args.dropout,
            os.path.join(self.args.work_dir, "pretrain"), lambda rows: None,
            pieces=self.pieces)
      quality_runs.keep_checkpoint(run_dir, step, kept)
    result = benchlib.read_json(os.path.join(kept, "result.json"), None)
    return (checkpoints.path(kept, step), step,
            math.exp(-result["value"]))


if __name__ == "__main__":
  main()
