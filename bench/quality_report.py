"""The quality benchmark's report: from the runs' learning curves, the tables
(<kind>.csv/.json/.md: final and best step, mean and spread over seeds,
ranking by step, each published pair checked against the seed spread) and
the plot (<kind>.png).

An order between two rows is claimed only where every seed of one is ahead
of every seed of the other (spread_status()); one seed has no spread.
"""

import math
import os
import statistics
import textwrap

import benchlib
from quality_data import PIECES
from quality_rows import METRIC, ORDERS, VARIATIONS

WINDOW = 4  # the tables' mean over each run's last evaluations (1000 steps)
PACKING = {
    "lm": "Training batches are packed as T5 packs them (several documents per "
          "row) for every row but those marked /unpacked; stock_* is "
          "mesh-tensorflow's own Synthesizer, whose tables are indexed by the "
          "offset in the packed row. /bias: with T5's relative position bias "
          "(relative_attention_type = 'bias_shared'; vanilla has it, our "
          "layer does not by default). /stock_init: R initialized at the "
          "release's RMS (0.0027) instead of N(0, 1); /stock_table: "
          "that, in the release's 512 x 512 table (a 128-byte row uses its "
          "first 128 x 128).",
    "cls": "Word pieces (train_pieces(): SentencePiece, %d pieces, trained "
           "on the training text; each run in the JSON names its sha256). "
           "Training batches are not packed (one example per row) for any "
           "row; stock_* is mesh-tensorflow's own Synthesizer." % PIECES,
    "pretrain": "T5's span corruption on the WikiText-2 text in word pieces "
                "(as cls; packed, as T5 pretrains); encoder-decoder models, "
                "every self-attention replaced.",
    "finetune": "Word pieces (as cls). Encoder-decoder models, every "
                "self-attention replaced, "
                "finetuned (not packed) from their span-corruption checkpoint "
                "(/pretrained, steps counted from the start of finetuning) or "
                "trained from scratch (/scratch)."}


def curve_rows(kind, runs):
  """One row per (dataset, variant, seed, step) in the metric's own units;
  steps counted from the start of the run's own training (finetuning)."""
  out = []
  for r in runs:
    for step, value in r["curve"]:
      step -= r.get("offset", 0)
      if METRIC[kind] == "perplexity":  # neg log perplexity -> perplexity
        value = math.exp(-value)
      elif value <= 1.0 and "accuracy" in r["metric"]:
        value *= 100.0
      out.append({"dataset": r["dataset"], "variant": r["variant"],
                  "seed": r["seed"], "step": step,
                  METRIC[kind]: round(value, 4)})
  return out



def summarize(kind, runs, out, info, planned, steps, dropout):
  """Write <kind>.csv/.json/.md/.png from the finished runs (called after
  every run, so a partial benchmark has its tables too); planned: the
  invocation's [(dataset, variant, seed)], trained to `steps`. A row whose
  seeds reach different steps (a dataset half way through being trained
  on further) is compared at the last step all its seeds have."""
  metric = METRIC[kind]
  lower = metric == "perplexity"
  rows = curve_rows(kind, runs)
  name = "quality_%s" % kind
  benchlib.write_csv(os.path.join(out, name + ".csv"),
                     ["dataset", "variant", "seed", "step", metric], rows)
  benchlib.write_json(os.path.join(out, name + ".json"),
                      {"stamp": info, "runs": runs})
  curves = {}  # (dataset, variant) -> {seed: {step: value}}
  for r in rows:
    curves.setdefault((r["dataset"], r["variant"]), {}).setdefault(
        r["seed"], {})[r["step"]] = r[metric]
  what = ("validation perplexity per %s (lower is better)" % (
      "byte" if kind == "lm" else "target word piece") if lower
          else "validation accuracy, % (higher is better)")
  with open(os.path.join(out, name + ".md"), "w") as f:
    f.write("# Quality: %s\n\n%s\n\n%s. %s Dropout %s for every variant. "
            "%s\n\n" % (name, benchlib.stamp_line(info), what,
                        progress(runs, planned, steps), dropout,
                        PACKING[kind]))
    for ds in sorted({k[0] for k in curves}):
      f.write(dataset_table(curves, ds, lower))
      f.write("\n" + ranking_by_step(curves, ds, lower) + "\n")
      for source, pairs in ORDERS.get(kind, {}).get(ds, []):
        f.write(orderings(curves, ds, lower, source, pairs) + "\n")
    f.write(pretrained_starts(runs))
  plot(curves, os.path.join(out, name + ".png"), what)
  print("wrote %s/%s.{csv,md,json,png}" % (out, name), flush=True)


def progress(runs, planned, steps):
  """How many of the invocation's planned runs reached `steps`, and how many
  committed runs lie outside its plan."""
  in_plan = set(planned)
  mine = [r for r in runs if (r["dataset"], r["variant"], r["seed"]) in in_plan]
  done = sum(r["curve"][-1][0] - r.get("offset", 0) >= steps for r in mine)
  outside = ("" if len(mine) == len(runs) else " (and %d committed before, "
             "outside this invocation's plan)" % (len(runs) - len(mine)))
  return "%d of %d runs trained to step %d or further%s." % (
      done, len(planned), steps, outside)


def dataset_table(curves, ds, lower):
  """One dataset's table: a row per variant, best first, each at the last
  step all its seeds have (seeds trained further are cut there)."""
  best = min if lower else max
  table = []
  for (d, v), by_seed in curves.items():
    if d != ds:
      continue
    step = common_steps(by_seed)[-1]
    upto = [{s: x for s, x in c.items() if s <= step}
            for c in by_seed.values()]
    further = sum(max(c) > step for c in by_seed.values())
    last = [c[step] for c in upto]
    # one evaluation swings by points on a small dev set: a window too
    window = [statistics.mean([c[s] for s in sorted(c)[-WINDOW:]])
              for c in upto]
    bests = [best(c.values()) for c in upto]
    best_steps = [min(s for s in c if c[s] == best(c.values())) for c in upto]
    table.append((statistics.mean(last), v, len(by_seed), "%d%s" % (
        step, " (%d further)" % further if further else ""), last, window,
                  bests, best_steps))
  table.sort(reverse=not lower)
  return ("## %s\n\n| variant | seeds | last step of all seeds | at last "
          "step: mean (min-max) | last %d evaluations: mean (min-max) | "
          "best over steps: mean (min-max) | best step (per seed) |\n"
          "|---|---:|---:|---:|---:|---:|---|\n" % (ds, WINDOW)
          + "".join("| %s | %d | %s | %s | %s | %s | %s |\n" % (
              v, n, step, spread(last), spread(window), spread(bests),
              ", ".join(map(str, best_steps)))
                    for _, v, n, step, last, window, bests, best_steps
                    in table))


def pretrained_starts(runs):
  """The section naming the checkpoint each /pretrained run started from
  ('' for runs without one)."""
  starts = {}
  for r in runs:
    if "pretrained_perplexity" in r:
      starts.setdefault(base(r["variant"]), []).append(
          r["pretrained_perplexity"])
  if not starts:
    return ""
  return ("## Pretrained checkpoints\n\nThe validation perplexity of "
          "the checkpoint each /pretrained run started from (runs "
          "started from it), kept with these tables under "
          "checkpoints/ so that runs on later machines start from it "
          "too. Two values for one variant: it was pretrained again, "
          "with the same seed, on another machine (before checkpoints "
          "were kept), where sums in another order (another CPU or "
          "thread count) change the last bits, which training "
          "amplifies.\n\n" + "".join(
              "- %s: %s\n" % (v, ", ".join(
                  "%.4f (%d)" % (x, values.count(x))
                  for x in sorted(set(values))))
              for v, values in sorted(starts.items())))


def common_steps(*rows):
  """The steps, in order, that every seed of every row ({seed: {step: value}})
  has been evaluated at."""
  return sorted(set.intersection(*(set(c) for by_seed in rows
                                   for c in by_seed.values())))


def spread(values):
  """'mean (min-max)' of the seeds' values."""
  return "%.2f (%.2f-%.2f)" % (statistics.mean(values), min(values),
                               max(values))


def unchanged_since(steps, values):
  """The first of `steps` from which `values` (one per step) stay equal to the
  last one; None without steps."""
  since = None
  for step, value in reversed(list(zip(steps, values))):
    if value != values[-1]:
      break
    since = step
  return since


def spread_status(curves, ds, a, b, step, lower):
  """'holds' when every seed of a is ahead of every seed of b at `step`,
  'reversed' when every seed of b is ahead of every seed of a, 'within the
  spread' otherwise (every seed of both has `step`)."""
  ahead = (lambda x, y: x < y) if lower else (lambda x, y: x > y)
  va = [c[step] for c in curves[(ds, a)].values()]
  vb = [c[step] for c in curves[(ds, b)].values()]
  if all(ahead(x, y) for x in va for y in vb):
    return "holds"
  if all(ahead(y, x) for x in va for y in vb):
    return "reversed"
  return "within the spread"


def orderings(curves, ds, lower, source, pairs):
  """Each pair (a, b) that `source` orders (a ahead of b), checked here at
  every step (spread_status); 'since' is the step from which the last step's
  status held at every evaluation. Needs 2 seeds of both (one seed has no
  spread)."""
  lines, counts = [], {"holds": 0, "reversed": 0}
  for a, b in pairs:
    if (ds, a) not in curves or (ds, b) not in curves:
      continue
    seeds = min(len(curves[(ds, a)]), len(curves[(ds, b)]))
    steps = common_steps(curves[(ds, a)], curves[(ds, b)])
    if seeds < 2 or not steps:
      lines.append(benchlib.md_row(["%s ahead of %s" % (a, b),
                                    "(%d seed)" % seeds, ""]))
      continue
    statuses = [spread_status(curves, ds, a, b, step, lower)
                for step in steps]
    now = statuses[-1]
    if now in counts:
      counts[now] += 1
    lines.append(benchlib.md_row([
        "%s ahead of %s" % (a, b), "%s at %d" % (now, steps[-1]),
        unchanged_since(steps, statuses) if now in counts else ""]))
  if not lines:
    return ""
  return ("Pairs ordered by %s, checked against the seed spread here: %d "
          "hold, %d reversed, %d within the spread or not yet on 2 seeds."
          "\n\n| pair | last step | since step |\n|---|---|---:|\n%s\n"
          % (source, counts["holds"], counts["reversed"],
             len(lines) - sum(counts.values()), "\n".join(lines)))


def ranking_by_step(curves, ds, lower):
  """The order of the variants' seed means at each step, and the step from
  which it no longer changes; likewise for the pairs that the seed spread
  separates, which moves less with noise than the order of means. Only the
  steps every seed of every row has: a ranking of some rows is none."""
  steps = common_steps(*(c for (d, _), c in curves.items() if d == ds))
  lines, orders, separated, rows = [], [], [], []
  for step in steps:
    means = []
    for (d, v), by_seed in curves.items():
      if d == ds:
        means.append((statistics.mean(c[step] for c in by_seed.values()), v))
    means.sort(reverse=not lower)
    orders.append([v for _, v in means])
    lines.append("| %d | %s |" % (step, " > ".join(
        "%s %.2f" % (v, m) for m, v in means)))
    # the pairs one of which is ahead at every seed (rows with 2+ seeds)
    rows = sorted(v for _, v in means if len(curves[(ds, v)]) > 1)
    separated.append({(a, b, st) for i, a in enumerate(rows)
                      for b in rows[i + 1:]
                      if (st := spread_status(curves, ds, a, b, step, lower))
                      != "within the spread"})
  pairs = len(rows) * (len(rows) - 1) // 2
  return ("Ranking (best first) by step; unchanged from step %s on. The pairs "
          "of rows that the seed spread separates (every seed of one ahead of "
          "every seed of the other; rows with 2 seeds or more): %d of %d at "
          "the last step, the same pairs the same way round from step %s on. "
          "%s\n\n| step | ranking |\n|---:|---|\n%s\n" % (
              unchanged_since(steps, orders), len(separated[-1]), pairs,
              unchanged_since(steps, separated),
              changed_sides(steps, separated), "\n".join(lines)))


def changed_sides(steps, separated, shown=6):
  """The pairs that crossed outside the spread: one row ahead of the other
  at an evaluation and behind it at a later one, every seed both times (a
  pair leaving or entering the spread is not a crossing); each pair at its
  last crossing, latest first. separated: per step, {(a, b, status)}."""
  side, last = {}, {}
  for step, now in zip(steps, separated):
    for a, b, status in now:
      if side.get((a, b), status) != status:
        last[(a, b)] = step
      side[(a, b)] = status
  if not last:
    return "No pair changed sides outside the spread."
  latest = sorted(last.items(), key=lambda kv: (-kv[1], kv[0]))
  return ("Pairs that changed sides outside the spread (one ahead of the "
          "other at an evaluation, behind it at a later one): %d, latest "
          "first: %s%s." % (
              len(latest),
              "; ".join("%s and %s at %d" % (a, b, step)
                        for (a, b), step in latest[:shown]),
              "" if len(latest) <= shown else
              "; %d more" % (len(latest) - shown)))


# One panel per group of rows (those the curves have), so that 24 LM rows stay
# readable. A row has its variant's colour (stock_R and R share one), its line
# dashed when it changes a variant (CHANGED); the rows of ours it changes, and
# vanilla, are drawn dotted as references where they are not members.
CHANGED = VARIATIONS + ("/scratch",)
# (title, which rows, what the dashed lines are)
PANELS = [
    ("the paper's rows", lambda v: "/" not in v and not v.startswith("stock_"),
     None),
    ("mesh-tensorflow's Synthesizer", lambda v: v.startswith("stock_"),
     "unpacked"),
    ("ours unpacked, with T5's relative bias or the release's R",
     lambda v: not v.startswith("stock_") and v.endswith(VARIATIONS),
     "the changed rows"),
    ("finetuned from span corruption or from scratch",
     lambda v: v.endswith(("/pretrained", "/scratch")), "from scratch"),
]


def panel_title(title, dashed, members, references):
  """A panel's title, naming only the line styles it draws."""
  styles = ["dashed: %s" % dashed] if any(
      v.endswith(CHANGED) for v in members) else []
  if references:
    styles.append("dotted: %s" % ", ".join(references))
  return "%s%s" % (title, " (%s)" % "; ".join(styles) if styles else "")


def base(row):
  """The variant of ours a row changes: stock_R/unpacked -> R."""
  return row.split("/")[0].replace("stock_", "")


def plot(curves, path, what):
  plt = benchlib.pyplot()
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top
  dss = sorted({k[0] for k in curves})
  panels = [panel for panel in PANELS
            if any(panel[1](v) for _, v in curves)]
  fig, axes = plt.subplots(len(dss), len(panels),
                           figsize=(6 * len(panels), 4.5 * len(dss)),
                           squeeze=False)
  cmap = plt.get_cmap("tab10")
  for row, ds in zip(axes, dss):
    for ax, (title, member, dashed) in zip(row, panels):
      members = [v for d, v in sorted(curves) if d == ds and member(v)]
      bases = sorted({base(v) for v in members} | {"vanilla"},
                     key=lambda b: (b != "vanilla", b))
      references = [b for b in bases if b not in members and (ds, b) in curves]
      for v in members + references:
        by_seed = curves[(ds, v)]
        steps = common_steps(by_seed)
        vals = [[c[s] for c in by_seed.values()] for s in steps]
        colour = cmap(bases.index(base(v)) % 10)
        style = (":" if v in references else
                 "--" if v.endswith(CHANGED) else "-")
        ax.plot(steps, [statistics.mean(x) for x in vals], style,
                color=colour, label="%s (%d)" % (v, len(by_seed)), lw=1.2)
        ax.fill_between(steps, [min(x) for x in vals],
                        [max(x) for x in vals], color=colour, alpha=0.15)
      ax.set_xlabel("training step")
      # wrapped: a long title runs into the next panel's
      ax.set_title("%s\n%s; band = seed min-max" % (textwrap.fill(
          "%s: %s" % (ds, panel_title(title, dashed, members, references)),
          80), what), fontsize=8)
      ax.legend(fontsize=6, ncol=2)
      if "perplexity" in what:
        ax.set_yscale("log")
        # plain numbers: within one decade every tick is a minor one, which
        # matplotlib would print as 4x10^1 or not at all
        plain = ticker.FuncFormatter(lambda y, _: "%g" % y)
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)
