"""Where a variant's training step spends its time, next to vanilla's.

  python bench/profile.py D+V [--length 512] [--top 15]

Runs a few traced training steps (TensorFlow's step stats) of the benchmark's
model for vanilla and the given variant, and prints per TF op type the summed
op time in ms per step for both, largest differences first. Op times on 2 cores
overlap, so the sums exceed the wall time; the differences are what to read.
"""

import argparse
import collections

from speed import VARIANTS, Model


def op_times(model, steps):
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  totals = collections.Counter()
  for _ in range(steps):
    meta = tf.RunMetadata()
    model.sess.run([model.train_op, model.loss],
                   options=tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE),
                   run_metadata=meta)
    for dev in meta.step_stats.dev_stats:
      for node in dev.node_stats:
        op = node.timeline_label.split("(")[0].split(" = ")[-1] or (
            node.node_name)
        totals[op] += node.op_end_rel_micros - node.op_start_rel_micros
  return {k: v / 1000.0 / steps for k, v in totals.items()}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("variant", choices=sorted(VARIANTS))
  p.add_argument("--length", type=int, default=512)
  p.add_argument("--batch", type=int, default=4)
  p.add_argument("--steps", type=int, default=2)
  p.add_argument("--top", type=int, default=15)
  args = p.parse_args(argv)
  times = {}
  for v in ["vanilla", args.variant]:
    times[v] = op_times(Model(v, args.length, 16, args.batch), args.steps)
  base, var = times["vanilla"], times[args.variant]
  ops = sorted(set(base) | set(var),
               key=lambda k: -abs(var.get(k, 0) - base.get(k, 0)))
  print("%-28s %12s %12s %10s" % ("op type", "vanilla ms", args.variant + " ms",
                                  "diff"))
  for k in ops[:args.top]:
    print("%-28s %12.1f %12.1f %+10.1f" % (k, base.get(k, 0), var.get(k, 0),
                                           var.get(k, 0) - base.get(k, 0)))
  print("%-28s %12.1f %12.1f %+10.1f" % ("total", sum(base.values()),
                                         sum(var.values()),
                                         sum(var.values()) - sum(base.values())))


if __name__ == "__main__":
  main()
