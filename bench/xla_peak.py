"""What is live at the peak of a training step under XLA, per variant.

  python bench/xla_peak.py [--length 2048] [--layers 1] [--variants D,FD,...]
      [--top 8] [--out DIR]

The same compile as bench/xla_memory.py (synth_mtf/fit.py: T5.1.1-small dims,
batch 4, targets 16, float32, one core), with `num_layers` layers per stack so
that one layer's buffers stand out, and the buffer assignment kept: its "Live
ranges at N (peak)" section, read with synth_mtf.xla.peak_buffers, lists what
XLA holds at the step's peak. Each buffer is shown with its shape and the TF op
it came from; docs/reference.md ("What is ours to cut") says which are inherent
to the formula and which our layer added. Writes xla_peak.{md,json} under DIR.
"""

import argparse
import os
import shutil
import tempfile

import benchlib
from benchlib import GIB
from speed import release_cannot
import xla_memory


def measure(variant, length, layers, top):
  from synth_mtf import fit, xla  # pylint: disable=g-import-not-at-top
  if release_cannot(variant, length):
    length = 512  # the release's Synthesizer hard-codes it
  spec = xla_memory.spec(variant, "float32", length, 4, 16)
  spec["gin_param"].append("num_layers = %d" % layers)
  dump = tempfile.mkdtemp(prefix="xla_peak_")
  try:
    got = fit.measure(spec, dump_dir=dump)
    if got["status"] != "ok":
      return dict(variant=variant, length=length, status=got["status"],
                  buffers=[])
    return dict(variant=variant, length=length, status="ok",
                total_bytes=got["memory"]["total"],
                buffers=[dict(bytes=b, instruction=n, shape=s, tf_op=op)
                         for b, n, s, op in xla.peak_buffers(dump, top)])
  finally:
    shutil.rmtree(dump, ignore_errors=True)


def write(out, rows, info, length, layers):
  benchlib.write_json(os.path.join(out, "xla_peak.json"),
                      {"stamps": [info], "rows": rows})
  with open(os.path.join(out, "xla_peak.md"), "w") as f:
    f.write("# Buffers live at the peak of a training step under XLA: "
            "T5.1.1-small dims, %d layer(s) per stack, length %d, batch 4, "
            "float32 (the release's Synthesizer, stock_*, at 512: it hard-codes "
            "that length)\n\n- %s\n\n" % (layers, length,
                                     benchlib.stamp_line(info)))
    for r in rows:
      f.write("## %s, length %d: %s\n\n" % (
          r["variant"], r["length"], "total %.3f GiB" % (
              r["total_bytes"] / GIB) if r["status"] == "ok" else r["status"]))
      if r["buffers"]:
        f.write(benchlib.md_table(["MiB", "shape", "TF op"], [
            ["%.0f" % (b["bytes"] / 2 ** 20), "`%s`" % b["shape"],
             "`%s`" % b["tf_op"]] for b in r["buffers"]]))
        f.write("\n")


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--length", type=int, default=2048)
  p.add_argument("--layers", type=int, default=1)
  p.add_argument("--variants", default=None, help="default: the catalogue")
  p.add_argument("--top", type=int, default=8)
  p.add_argument("--out", default=os.path.join(benchlib.RESULTS, "xla_peak"))
  args = p.parse_args(argv)
  variants = benchlib.check_variants(
      p, args.variants.split(",") if args.variants else
      xla_memory.all_variants(), xla_memory.all_variants())
  os.makedirs(args.out, exist_ok=True)
  info = benchlib.stamp()
  rows = []
  for v in variants:
    rows.append(measure(v, args.length, args.layers, args.top))
    r = rows[-1]
    print("%s: %s" % (v, "%.3f GiB" % (r["total_bytes"] / GIB)
                      if r["status"] == "ok" else r["status"]), flush=True)
    write(args.out, rows, info, args.length, args.layers)
  print("wrote %s/xla_peak.{md,json}" % args.out)


if __name__ == "__main__":
  main()
