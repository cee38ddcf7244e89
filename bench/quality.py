"""Quality at small scale on real text, every variant trained the same way.

  python bench/quality.py lm  [--data ../shared/data] [--seeds 1 2] [--steps 300]
  python bench/quality.py cls [--data ../shared/data] [--seeds 1 2] [--steps 300]

lm:  WikiText-2 language modelling, decoder-only, byte level: train on the test
     split, report validation perplexity per byte (Table 2's rows: Transformer,
     R, Fix, FR, D, FD, R+D, R+V, D+V).
cls: encoding-only classification (Table 7's rows: Transformer, Linformer, R,
     FR, FR+V, D, in the encoder), AG News (first 6,600 rows train, last 1,000
     eval) and SST-2 (train / dev), accuracy.

Each (variant, seed) is one run of the stock CLI through the sweep runner, with
a seeded input function (seeded init and data, as reproducible.gin, but on all
CPU threads): same model size, steps and learning rate for all. Finished runs are skipped, so an interrupted benchmark resumes.
Writes CSV, Markdown (mean and spread over seeds) and a plot, stamped with the
command, commit and machine.
"""

import argparse
import csv
import json
import math
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

LM_VARIANTS = {
    "Transformer": "models/baselines/transformer.gin",
    "R": "models/synthesizer/random.gin",
    "Fix": "models/synthesizer/fixed_random.gin",
    "FR": "models/synthesizer/factorized_random.gin",
    "D": "models/synthesizer/dense.gin",
    "FD": "models/synthesizer/factorized_dense.gin",
    "R+D": "models/synthesizer/random_plus_dense.gin",
    "R+V": "models/synthesizer/random_plus_vanilla.gin",
    "D+V": "models/synthesizer/dense_plus_vanilla.gin",
}
CLS_VARIANTS = {
    "Transformer": "models/encoder_only/transformer.gin",
    "Linformer": "models/encoder_only/linformer.gin",
    "R": "models/encoder_only/random.gin",
    "FR": "models/encoder_only/factorized_random.gin",
    "FR+V": "models/encoder_only/factorized_random_plus_vanilla.gin",
    "D": "models/encoder_only/dense.gin",
}


SEEDED = ["utils.run.train_dataset_fn = "
          "@synth_mtf.reproducible.seeded_train_dataset_fn"]


def datasets(kind, data):
  """name -> (bindings, eval gin files, eval bindings, metric, higher better)."""
  if kind == "lm":
    wiki = os.path.join(data, "wikitext2")
    return {"wikitext2": ([
        "utils.run.model_type = 'lm'",
        "MIXTURE_NAME = 'synth_mtf_local_lm'",
        "local_lm.train_path = %r" % os.path.join(wiki, "wiki.test.tokens"),
        "local_lm.validation_path = %r" % os.path.join(wiki,
                                                       "wiki.valid.tokens"),
    ], ["perplexity_eval.gin"], ["utils.run.perplexity_eval_steps = 50"],
                          "neg_log_perplexity", False)}
  ag = os.path.join(data, "ag_news", "test.csv")
  sst = os.path.join(data, "sst2")
  common = ["MIXTURE_NAME = 'synth_mtf_local_classification'",
            "utils.run.sequence_length = {'inputs': 128, 'targets': 16}",
            "Bitransformer.decode.max_decode_length = 16",
            "mesh_train_dataset_fn.pack = False"]
  return {
      "ag_news": (common + [
          "local_classification.train_path = %r" % ag,
          "local_classification.validation_path = %r" % ag,
          "local_classification.file_format = 'csv'",
          "local_classification.text_columns = (1, 2)",
          "local_classification.labels = {'1': 'World', '2': 'Sports', "
          "'3': 'Business', '4': 'Sci/Tech'}",
          "local_classification.backslash_is_newline = True",
          "local_classification.train_rows = (0, 6600)",
          "local_classification.validation_rows = (6600, 7600)"],
                  ["eval.gin", "greedy_decode.gin"], [], "accuracy", True),
      "sst2": (common + [
          "local_classification.train_path = %r" % os.path.join(sst,
                                                                "train.tsv"),
          "local_classification.validation_path = %r" % os.path.join(
              sst, "dev.tsv"),
          "local_classification.header = True",
          "local_classification.labels = {'0': 'negative', '1': 'positive'}"],
               ["eval.gin", "greedy_decode.gin"], [], "accuracy", True),
  }


def run(kind, data, seeds, steps, out, variants=None, only=None):
  from synth_mtf import sweep as sweep_lib  # pylint: disable=g-import-not-at-top
  all_variants = LM_VARIANTS if kind == "lm" else CLS_VARIANTS
  variants = {v: all_variants[v] for v in (variants or all_variants)}
  rows = []
  for name, (bindings, eval_files, eval_bindings, metric, _) in sorted(
      datasets(kind, data).items()):
    if only and name not in only:
      continue
    for path in [b.split(" = ")[1].strip("'") for b in bindings
                 if "_path" in b]:
      if not os.path.exists(path):
        raise SystemExit("missing %s: pass --data (the folder of "
                         "shared/data's README)" % path)
    sweep = sweep_lib.Sweep(
        variants=variants,
        base_gin_files=["experiments/bench_small.gin"],
        grid={"seeded_train_dataset_fn.seed": list(seeds)},
        # seeded init and data as reproducible.gin, but on all CPU threads
        bindings=bindings + SEEDED + ["utils.run.train_steps = %d" % steps,
                             "utils.run.save_checkpoints_steps = %d" % steps],
        eval_gin_files=eval_files,
        eval_bindings=["run.dataset_split = 'validation'",
                       "utils.get_variable_dtype.activation_dtype = 'float32'"]
        + eval_bindings, metric=metric)
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    for run_id, variant, gin_file, crossed in sweep.runs():
      r = sweep_lib.run_one(sweep, run_id, variant, gin_file, crossed, d,
                            log=lambda m: print(m, flush=True))
      r["dataset"] = name
      rows.append(r)
  return rows


def summarize(rows, kind, out, info):
  groups = {}
  for r in rows:
    groups.setdefault((r["dataset"], r["variant"]), []).append(r)
  table = []
  for (dataset, variant), rs in groups.items():
    values = [r["value"] for r in rs]
    if kind == "lm":  # neg log perplexity per byte -> perplexity
      values = [math.exp(-v) for v in values]
    table.append({"dataset": dataset, "variant": variant, "seeds": len(rs),
                  "mean": round(statistics.mean(values), 4),
                  "min": round(min(values), 4), "max": round(max(values), 4),
                  "params": rs[0]["parameters"],
                  "steps_per_sec": round(statistics.median(
                      r["steps_per_sec"] or 0 for r in rs), 2)})
  name = "quality_%s" % kind
  with open(os.path.join(out, name + ".csv"), "w", newline="") as f:
    w = csv.DictWriter(f, list(table[0]))
    w.writeheader()
    w.writerows(table)
  with open(os.path.join(out, name + ".json"), "w") as f:
    json.dump({"stamp": info, "rows": table, "runs": rows}, f, indent=1)
  what = ("validation perplexity per byte (lower is better)" if kind == "lm"
          else "validation accuracy, % (higher is better)")
  with open(os.path.join(out, name + ".md"), "w") as f:
    f.write("# Quality: %s\n\n`%s` at commit %s, %s, on %s.\n\n%s; mean and "
            "min-max over seeds.\n\n" % (name, info["command"], info["commit"],
                                         info["date"], info["machine"], what))
    f.write("| dataset | variant | seeds | mean | min | max | params | "
            "steps/s |\n|---|---|---:|---:|---:|---:|---:|---:|\n")
    for t in table:
      f.write("| %(dataset)s | %(variant)s | %(seeds)d | %(mean)s | %(min)s | "
              "%(max)s | %(params)s | %(steps_per_sec)s |\n" % t)
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  datasets_ = sorted({t["dataset"] for t in table})
  fig, axes = plt.subplots(1, len(datasets_), figsize=(5 * len(datasets_), 3.5),
                           squeeze=False)
  for ax, ds in zip(axes[0], datasets_):
    ts = [t for t in table if t["dataset"] == ds]
    x = range(len(ts))
    ax.bar(x, [t["mean"] for t in ts], color="#4C72B0",
           yerr=[[t["mean"] - t["min"] for t in ts],
                 [t["max"] - t["mean"] for t in ts]])
    ax.set_xticks(list(x))
    ax.set_xticklabels([t["variant"] for t in ts], rotation=45, fontsize=7)
    ax.set_title("%s: %s" % (ds, what), fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(out, name + ".png"), dpi=90)
  print("wrote %s/%s.{csv,md,json,png}" % (out, name))


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("kind", choices=["lm", "cls"])
  p.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared",
                                                "data"))
  p.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
  p.add_argument("--steps", type=int, default=300)
  p.add_argument("--variants", default=None,
                 help="comma-separated subset (default: all of the table)")
  p.add_argument("--datasets", default=None,
                 help="comma-separated subset (cls: ag_news,sst2)")
  p.add_argument("--out", default=os.path.join(HERE, "results", "quality"))
  p.add_argument("--work_dir", default=os.path.join(HERE, "..", "runs",
                                                    "quality"),
                 help="model dirs (not committed); finished runs are reused")
  args = p.parse_args(argv)
  import synth_mtf  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  from speed import stamp  # pylint: disable=g-import-not-at-top
  os.makedirs(args.out, exist_ok=True)
  rows = run(args.kind, os.path.abspath(args.data), args.seeds, args.steps,
             os.path.join(args.work_dir, args.kind),
             args.variants.split(",") if args.variants else None,
             args.datasets.split(",") if args.datasets else None)
  summarize(rows, args.kind, args.out, stamp())


if __name__ == "__main__":
  main()
