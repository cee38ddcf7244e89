"""Memory of a training step under XLA (the compiler a TPU uses) vs length.

  nice -n 19 python bench/xla_memory.py [--lengths 128 ... 16384]
      [--variants vanilla,R,...] [--dtypes float32,bfloat16]
      [--rss_cap_gib 6] [--compile_cap_s 1800] [--max_hours H] [--out DIR]

Every (variant, activation dtype, length) is what `synth-mtf fit` measures
(synth_mtf/fit.py): the variant's gin file on T5.1.1-small, batch 4, targets 16
(as bench/memory.py), one core; one training step compiled by XLA on this CPU in
a child process that is stopped as soon as XLA has written its buffer
assignment (the step is never run). Figures: XLA's "Total bytes used", its
inputs (variables, optimizer slots, features), parameters and slots counted
from the graph, and the compile time. Status: ok; too_big (the variables alone
pass --rss_cap_gib, so the child does not initialise them; their bytes are
still recorded, a lower bound of the total); oom (the child passed the cap while
compiling); too_slow (compiling passed --compile_cap_s); unsupported (the
release's Synthesizer hard-codes length 512). After a stop the variant's longer
lengths are not run (same status, a note says why).

One JSON per measurement under DIR/rows/: a run skips what is there, so it can
stop any time and resume (--redo oom,too_slow measures those again). The tables
(xla_memory.md/.csv), the plot and xla_memory.json are rewritten after each
measurement. Order: the most informative first (every variant at 512, 1024,
2048 in float32), then the rest of float32, then bfloat16.
"""

import argparse
import glob
import json
import os
import time

import benchlib
from benchlib import GIB, SIZE
from speed import release_cannot

DTYPES = ("float32", "bfloat16")
LENGTHS = [128, 256, 512, 1024, 2048, 4096, 8192, 16384]
FIRST = (512, 1024, 2048)
STOPS = ("oom", "too_slow", "too_big")
BUDGETS = (16, 32)
# Long Range Arena (Tay et al. 2021, Table 3), TPU memory in GB at 1K..4K
LRA = {"lengths": [1024, 2048, 3072, 4096],
       "Synthesizer": [0.65, 1.98, 4.09, 6.99],
       "Transformer": [0.85, 2.65, 5.51, 9.48]}
COLUMNS = ["variant", "dtype", "length", "status", "total_bytes",
           "input_bytes", "param_bytes", "slot_bytes", "compile_s", "note"]


def all_variants():
  from synth_mtf import variants  # pylint: disable=g-import-not-at-top
  return [v.label for v in variants.CATALOGUE]


def spec(variant, dtype, length, batch, target_length):
  """The fit spec of one measurement: the variant on T5.1.1-small, one core."""
  from synth_mtf import variants  # pylint: disable=g-import-not-at-top
  v = variants.get(variant)
  kind = "bi" if v.gin else "encoder_only"  # Linformer: Table 7's model
  bindings = list(v.bindings) + [
      "max_length = %d" % length,
      "SynthesizerAttention.max_length = %d" % length,
      "LinformerAttention.max_length = %d" % length,
      "utils.get_variable_dtype.activation_dtype = %r" % dtype,
      "utils.run.sequence_length = {'inputs': %d, 'targets': %d}" % (
          length, target_length),
      "utils.run.batch_size = ('sequences_per_batch', %d)" % batch,
      "utils.run.mesh_shape = 'model:1,batch:1'"]
  return dict(gin_file=["models/t5.1.1.small.gin", v.gin_file(kind)],
              gin_param=bindings, module_import=["synth_mtf"],
              gin_location_prefix=[], vocab_size=SIZE["vocab"])


def plan(variants, dtypes, lengths):
  """(variant, dtype, length) in the order that informs soonest."""
  order = []
  for dtype in dtypes:
    for group in ([n for n in lengths if n in FIRST],
                  [n for n in lengths if n not in FIRST]):
      order += [(v, dtype, n) for n in group for v in variants]
  return order


def row_path(out, variant, dtype, length):
  return os.path.join(out, "rows", "%s_%s_%d.json" % (
      variant.replace("+", "p"), dtype, length))


def load_rows(out):
  rows = []
  for path in sorted(glob.glob(os.path.join(out, "rows", "*.json"))):
    with open(path) as f:
      rows.append(json.load(f))
  return rows


def measure(args, variant, dtype, length, stamp):
  from synth_mtf import fit  # pylint: disable=g-import-not-at-top
  row = dict(variant=variant, dtype=dtype, length=length, stamp=stamp,
             total_bytes=None, input_bytes=None, param_bytes=None,
             slot_bytes=None, compile_s=None, note="")
  why = release_cannot(variant, length)
  if why:
    return dict(row, status="unsupported", note=why)
  log = os.path.join(args.log_dir, "%s_%s_%d.log" % (variant, dtype, length))
  os.makedirs(args.log_dir, exist_ok=True)
  t0 = time.time()
  try:
    got = fit.measure(spec(variant, dtype, length, args.batch,
                           args.target_length),
                      rss_cap=args.rss_cap_gib * GIB,
                      compile_cap_s=args.compile_cap_s, log_path=log)
  except fit.FitError as e:
    return dict(row, status="error", note=str(e)[-500:])
  v, m = got.get("variables", {}), got.get("memory")
  row.update(status=got["status"], param_bytes=v.get("param_bytes"),
             slot_bytes=v.get("slot_bytes"), wall_s=round(time.time() - t0))
  if m:
    row.update(total_bytes=m["total"], input_bytes=m["parameters"],
               compile_s=got["compile_s"])
  elif got["status"] == "too_big":
    row["note"] = "variables and slots alone %.2f GiB > cap %g GiB" % (
        (row["param_bytes"] + row["slot_bytes"]) / GIB, args.rss_cap_gib)
  elif got["status"] in ("oom", "too_slow"):
    row["note"] = "stopped while compiling (%s)" % got["status"]
  return row


def lower_bound(r):
  """Bytes the step needs at least: XLA's total, else the variables'."""
  if r.get("total_bytes"):
    return r["total_bytes"]
  if r["status"] == "too_big" and r["param_bytes"] is not None:
    return r["param_bytes"] + r["slot_bytes"]
  return None  # not measured: a shorter length already stopped


def longest_fitting(rows, variant, dtype, budget):
  """(longest measured length whose total fits, the first that does not)."""
  mine = sorted((r for r in rows if (r["variant"], r["dtype"]) == (
      variant, dtype)), key=lambda r: r["length"])
  fits = [r["length"] for r in mine if r["status"] == "ok"
          and r["total_bytes"] <= budget * GIB]
  over = [r["length"] for r in mine if (lower_bound(r) or 0) > budget * GIB]
  return (max(fits) if fits else None), (min(over) if over else None)


def gib(b):
  return "" if b is None else "%.2f" % (b / GIB)


def write(out, rows, stamps):
  rows.sort(key=lambda r: (DTYPES.index(r["dtype"]), r["length"],
                           all_variants().index(r["variant"])))
  used = [s for s in stamps if any(r["stamp"] == s["date"] for r in rows)]
  benchlib.write_json(os.path.join(out, "xla_memory.json"),
                      {"stamps": used, "rows": rows})
  benchlib.write_csv(os.path.join(out, "xla_memory.csv"), COLUMNS, rows)
  variants = [v for v in all_variants() if any(r["variant"] == v
                                               for r in rows)]
  tf_rows = read_tf_rows()
  with open(os.path.join(out, "xla_memory.md"), "w") as f:
    f.write("# A training step's memory under XLA vs length: T5.1.1-small "
            "dims, batch 4, targets 16, Adafactor, one core\n\n")
    for s in used:
      f.write("- %s %s\n" % (benchlib.stamp_line(s), s.get("settings", "")))
    f.write(
        "\nEach figure is XLA's \"Total bytes used\" from the buffer "
        "assignment of one training step (forward, gradients, Adafactor) "
        "compiled for this CPU by `synth-mtf fit` (synth_mtf/fit.py): exact "
        "for this compile, not a TPU's (a TPU pads to 8 x 128 tiles, schedules "
        "its own way and updates variables in place; here the updated "
        "variables and slots get buffers of their own). too_big: the variables "
        "and slots alone pass the cap of this machine's run; the figure shown "
        "(in parentheses) is theirs, a lower bound.\n\n")
    for dtype in DTYPES:
      mine = [r for r in rows if r["dtype"] == dtype]
      if not mine:
        continue
      lengths = sorted({r["length"] for r in mine})
      f.write("## %s activations: total GiB\n\n" % dtype)
      table = []
      for v in variants:
        cells = [v]
        for n in lengths:
          r = next((r for r in mine if (r["variant"], r["length"]) == (v, n)),
                   None)
          if r is None:
            cells.append("")
          elif r["status"] == "ok":
            cells.append(gib(r["total_bytes"]))
          elif lower_bound(r) is not None:  # too_big, its variables' bytes
            cells.append("(%s) too_big" % gib(lower_bound(r)))
          else:
            cells.append(r["status"])
        for b in BUDGETS:
          fit_n, over_n = longest_fitting(rows, v, dtype, b)
          cells.append("%s%s" % (fit_n or "none", "" if over_n else
                                 " (longer not measured or all fit)"))
        table.append(cells)
      f.write(benchlib.md_table(
          ["variant"] + [str(n) for n in lengths] +
          ["longest fitting %d GiB" % b for b in BUDGETS], table))
      f.write("\nCompile time, s (this CPU, shared):\n\n")
      f.write(benchlib.md_table(["variant"] + [str(n) for n in lengths], [
          [v] + ["" if r is None or r["compile_s"] is None else
                 "%.0f" % r["compile_s"] for r in [next(
                     (r for r in mine if (r["variant"], r["length"]) == (v, n)),
                     None) for n in lengths]] for v in variants]))
      f.write("\n")
    f.write(ratio_section(rows))
    f.write(tf_section(rows, tf_rows))
    f.write("\n## All rows\n\n" + benchlib.md_table(COLUMNS, [
        dict(r, total_bytes=gib(r["total_bytes"]),
             input_bytes=gib(r["input_bytes"]),
             param_bytes=gib(r["param_bytes"]),
             slot_bytes=gib(r["slot_bytes"])) for r in rows]))
  plot(out, rows, used, tf_rows)


def ratio_section(rows):
  """Our variants' total over vanilla's, beside Long Range Arena's
  Synthesizer/Transformer ratio on TPU."""
  lra = {n: s / t for n, s, t in zip(LRA["lengths"], LRA["Synthesizer"],
                                      LRA["Transformer"])}
  text = ("## Ratio to vanilla, beside Long Range Arena\n\n"
          "Long Range Arena (Tay et al. 2021) measured a Synthesizer's TPU "
          "memory at 0.65/1.98/4.09/6.99 GB against a Transformer's "
          "0.85/2.65/5.51/9.48 GB at 1K/2K/3K/4K: ratios %s. Ours, XLA total "
          "of the variant over vanilla's at the same length and dtype:\n\n" %
          "/".join("%.2f" % lra[n] for n in LRA["lengths"]))
  table = []
  for dtype in DTYPES:
    base = {r["length"]: r["total_bytes"] for r in rows if r["dtype"] == dtype
            and r["variant"] == "vanilla" and r["status"] == "ok"}
    for v in all_variants():
      mine = {r["length"]: r["total_bytes"] for r in rows
              if (r["variant"], r["dtype"]) == (v, dtype)
              and r["status"] == "ok" and r["length"] in base}
      if v != "vanilla" and mine:
        table.append([v, dtype] + ["%.2f" % (mine[n] / base[n]) if n in mine
                                   else "" for n in (1024, 2048, 4096)])
  return text + benchlib.md_table(
      ["variant", "dtype", "1024", "2048", "4096"], table) + (
          "\nLRA's rows at 1024/2048/4096: %.2f / %.2f / %.2f.\n" % (
              lra[1024], lra[2048], lra[4096]))


def read_tf_rows():
  """bench/memory.py's rows: the same step run by TF's CPU runtime."""
  return benchlib.read_json(os.path.join(benchlib.RESULTS, "memory",
                                         "memory.json"), {"rows": []})["rows"]


def tf_section(rows, tf_rows):
  """XLA's float32 total next to TF's runtime peak for the same step."""
  lengths = sorted({r["length"] for r in tf_rows})
  table = []
  for v in all_variants():
    tf_mine = {r["length"]: r for r in tf_rows if r["variant"] == v}
    if not tf_mine:
      continue
    cells = [v]
    for n in lengths:
      x = next((r for r in rows if (r["variant"], r["dtype"], r["length"]) ==
                (v, "float32", n)), None)
      xla = (gib(x["total_bytes"]) if x and x["status"] == "ok" else
             x["status"] if x else "")
      t = tf_mine.get(n)
      if t is None:
        ran = ""
      elif t["status"] == "ok":
        ran = gib(t["peak_rss_bytes"])
      elif t["status"] == "oom" and t["peak_rss_bytes"]:
        ran = "oom (>%s)" % gib(t["peak_rss_bytes"])
      else:
        ran = t["status"]
      cells.append("%s / %s" % (xla or "-", ran or "-"))
    table.append(cells)
  return ("\n## Next to TF's runtime\n\nXLA's total (float32, above) / the "
          "peak resident memory of the same step run by TF's CPU runtime "
          "([bench/memory.py](../memory/memory.md), capped at 16 GiB; it "
          "includes the runtime and the graph, about 2 GiB; measured at the "
          "commits its stamps name, before this table's layer changes). "
          "oom (>x): stopped at the cap; oom alone: not run after a shorter "
          "length stopped.\n\n"
          + benchlib.md_table(["variant"] + [str(n) for n in lengths], table))


def plot(out, rows, stamps, tf_rows):
  panels = []
  for dtype in DTYPES:
    ok = [r for r in rows if r["dtype"] == dtype and r["status"] == "ok"]
    if ok:
      panels.append(("XLA total, GiB (%s activations)" % dtype, {
          v: [(r["length"], r["total_bytes"] / GIB) for r in ok
              if r["variant"] == v] for v in all_variants()}))
  panels.append(("TF runtime peak RSS, GiB (bench/memory.py, float32)", {
      v: [(r["length"], r["peak_rss_bytes"] / GIB) for r in tf_rows
          if r["variant"] == v and r["status"] == "ok"]
      for v in all_variants()}))
  if len(panels) > 1:
    benchlib.loglog(os.path.join(out, "xla_memory.png"), panels,
                    "input length", "training step memory vs length: XLA "
                    "(compiled, buffer assignment) and TF runtime", stamps)


def stamps_with(out, mine):
  """The stamps on record plus this run's, read afresh before each write:
  two runs sharing --out (say, one per dtype) keep each other's stamps."""
  old = benchlib.read_json(os.path.join(out, "xla_memory.json"),
                           {"stamps": []})["stamps"]
  return [s for s in old if s["date"] != mine["date"]] + [mine]


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--lengths", type=int, nargs="+", default=LENGTHS)
  p.add_argument("--variants", default=None, help="default: the catalogue")
  p.add_argument("--dtypes", default=",".join(DTYPES))
  p.add_argument("--batch", type=int, default=4)
  p.add_argument("--target_length", type=int, default=16)
  p.add_argument("--rss_cap_gib", type=float, default=6.0)
  p.add_argument("--compile_cap_s", type=int, default=1800)
  p.add_argument("--max_hours", type=float, default=None,
                 help="start no measurement after this long (resume later)")
  p.add_argument("--redo", default="", help="statuses to measure again")
  p.add_argument("--note", default="")
  p.add_argument("--out", default=os.path.join(benchlib.RESULTS, "xla_memory"))
  p.add_argument("--log_dir", default=os.path.join(benchlib.ROOT, "runs",
                                                   "xla_memory"))
  p.add_argument("--tables_only", action="store_true",
                 help="rewrite the tables and plot from the rows")
  args = p.parse_args(argv)
  variants = benchlib.check_variants(
      p, args.variants.split(",") if args.variants else all_variants(),
      all_variants())
  dtypes = args.dtypes.split(",")
  os.makedirs(os.path.join(args.out, "rows"), exist_ok=True)
  mine = dict(benchlib.stamp(), settings=(
      "Batch %d, targets %d; caps %g GiB resident, %d s compiling.%s" % (
          args.batch, args.target_length, args.rss_cap_gib,
          args.compile_cap_s, " " + args.note if args.note else "")))
  redo = set(filter(None, args.redo.split(",")))
  t_start = time.time()
  for variant, dtype, length in plan(variants, dtypes, args.lengths):
    if args.tables_only:
      break
    if args.max_hours and time.time() - t_start > args.max_hours * 3600:
      print("--max_hours reached; rerun the same command to resume")
      break
    path = row_path(args.out, variant, dtype, length)
    done = benchlib.read_json(path)
    if done and done["status"] not in redo:
      continue
    rows = load_rows(args.out)
    stopped = [r for r in rows if (r["variant"], r["dtype"]) == (
        variant, dtype) and r["length"] < length and r["status"] in STOPS]
    if stopped:
      first = min(stopped, key=lambda r: r["length"])
      row = dict(variant=variant, dtype=dtype, length=length,
                 stamp=mine["date"], status=first["status"],
                 total_bytes=None, input_bytes=None, param_bytes=None,
                 slot_bytes=None, compile_s=None,
                 note="not run: %s at %d" % (first["status"], first["length"]))
    else:
      print("%s %s %d" % (variant, dtype, length), flush=True)
      row = measure(args, variant, dtype, length, mine["date"])
      print("  %s" % {k: row.get(k) for k in COLUMNS}, flush=True)
    benchlib.write_json(path, row)
    write(args.out, load_rows(args.out), stamps_with(args.out, mine))
  rows = load_rows(args.out)
  if rows:
    write(args.out, rows, stamps_with(args.out, mine))
  print("wrote %s/xla_memory.{md,csv,json,png}" % args.out)


if __name__ == "__main__":
  main()
