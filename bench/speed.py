"""Training speed of each attention variant, measured side by side in one run.

  python bench/speed.py [--lengths 128 512] [--variants R,vanilla,...] [--out DIR]

Every model is T5.1.1-small sized (d_model 512, 8+8 layers, d_ff 1024, 6 heads of
64) and identical but for its self-attention. All models are built first, then
timed in alternation (variant A, B, C, ..., then again), so that the machine's
drift hits all of them alike; the table reports the median steps/s, the spread
(min-max), the ratio to vanilla, the ratio an analytic FLOP count of the model's
matmuls predicts, and achieved/predicted. A training step is what the stock CLI
runs: forward, backward and an Adafactor update, on one CPU mesh device.

Also measured: the GFLOP/s a plain TensorFlow matmul reaches on this machine, to
compare the models' achieved GFLOP/s with.
"""

import argparse
import os
import statistics
import time

import numpy as np

import benchlib
from benchlib import SIZE

# the variants it times (model_flops knows them), on top of T5.1.1-small
VARIANTS = ["vanilla", "stock_R", "R", "Fix", "FR", "D", "FD", "R+V", "D+V",
            "DyConv", "LightConv"]
STOCK_MAX_LENGTH = 512  # mesh-tensorflow's Synthesizer hard-codes it


def release_cannot(variant, length):
  """Why mesh-tensorflow's own Synthesizer (the catalogue's stock_* labels)
  cannot run at `length`; None where it can, and for every other variant."""
  if variant.startswith("stock_") and length > STOCK_MAX_LENGTH:
    return "the release's Synthesizer hard-codes length %d" % STOCK_MAX_LENGTH
  return None


def variant_config(variant):
  """(gin files, bindings) of a catalogue label, on top of T5.1.1-small."""
  # imported here: synth_mtf brings TensorFlow, which memory.py's parent
  # process (it only launches and watches children) should not hold
  from synth_mtf import variants as catalogue  # pylint: disable=g-import-not-at-top
  v = catalogue.get(variant)
  return ["models/t5.1.1.small.gin", v.gin_file("bi")], list(v.bindings)


def model_flops(variant, length, target_length, batch, s=SIZE, k=8):
  """Forward matmul FLOPs of one step (2 per multiply-add); training ~ 3x."""
  d, dff, h, dkv, n_l, vocab = (s["d_model"], s["d_ff"], s["num_heads"],
                                s["d_kv"], s["num_layers"], s["vocab"])
  hd = h * dkv

  def self_attention(n):
    proj_vo = 2 * 2 * d * hd * n          # G (values) and output
    av = 2 * n * n * hd                   # weights x values
    qk = 2 * 2 * d * hd * n + 2 * n * n * hd  # Q, K projections and QK^T
    dense = 2 * d * hd * n + 2 * hd * n * n   # W1 and W2 (N = n columns)
    a = int(np.sqrt(n))
    fdense = 2 * d * hd * n + 2 * hd * 2 * a * n
    table_fr = 2 * h * n * n * k / batch  # R1 R2^T once per batch
    conv = 2 * d * d * n + 2 * d * 7 * n  # pointwise + depthwise (kernel 7)
    parts = {"vanilla": qk, "stock_R": 0, "R": 0, "Fix": 0, "FR": table_fr,
             "D": dense, "FD": fdense, "R+V": qk, "D+V": qk + dense}
    if variant in ("DyConv", "LightConv"):
      # DyConv predicts its 7 kernel taps per position: 7 dense layers
      # d_model -> d_model/16 (num_unique_depth_filters = 16), as mtf builds it.
      extra = 2 * d * (d // 16) * 7 * n if variant == "DyConv" else 0
      return conv + extra
    return proj_vo + av + parts[variant]

  def stack(n, cross_m=None):
    per = self_attention(n) + 3 * 2 * d * dff * n  # gated-GELU FFN
    if cross_m:
      per += 2 * 2 * d * hd * n + 2 * 2 * d * hd * cross_m + 4 * n * cross_m * hd
    return n_l * per

  enc = stack(length)
  dec = stack(target_length, cross_m=length) + 2 * d * vocab * target_length
  return batch * (enc + dec)


def matmul_gflops(m, k, n, reps=10):
  """GFLOP/s of one plain TF matmul [m, k] x [k, n] (the model's FFN shape)."""
  import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
  with tf.Graph().as_default():
    a = tf.random.normal([m, k])
    b = tf.Variable(tf.random.normal([k, n]))
    c = tf.reduce_sum(tf.matmul(a, b))
    with tf.Session() as sess:
      sess.run(tf.global_variables_initializer())
      sess.run(c)
      t0 = time.perf_counter()
      for _ in range(reps):
        sess.run(c)
      dt = (time.perf_counter() - t0) / reps
  return 2 * m * k * n / dt / 1e9


class Model(object):
  """One variant's training step in its own graph and session."""

  def __init__(self, variant, length, target_length, batch,
               extra_bindings=(), vocab=SIZE["vocab"], start=True):
    """extra_bindings: gin bindings after the variant's (other dims); start:
    open the session, initialise and run a warm-up step (else call start())."""
    import gin  # pylint: disable=g-import-not-at-top
    import mesh_tensorflow as mtf  # pylint: disable=g-import-not-at-top
    from mesh_tensorflow.transformer import utils as mtf_utils  # pylint: disable=g-import-not-at-top
    import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
    from synth_mtf import model_graph  # pylint: disable=g-import-not-at-top
    files, bindings = variant_config(variant)
    bindings += ["max_length = %d" % length,
                 "SynthesizerAttention.max_length = %d" % length,
                 "utils.get_variable_dtype.activation_dtype = 'float32'"]
    model_graph.parse(files, bindings + list(extra_bindings))
    self.graph = tf.Graph()
    with self.graph.as_default():
      tf.set_random_seed(0)
      mtf_graph = mtf.Graph()
      mesh = mtf.Mesh(mtf_graph, "mesh")
      model = mtf_utils.build_model("bitransformer", input_vocab_size=vocab,
                                    output_vocab_size=vocab)
      b = mtf.Dimension("batch", batch)
      rng = np.random.RandomState(0)

      def ids(n):
        return mtf.import_tf_tensor(
            mesh, tf.constant(rng.randint(2, 1000, size=(batch, n)), tf.int32),
            mtf.Shape([b, mtf.Dimension("length", n)]))

      vdt = mtf.VariableDType(tf.float32, tf.float32, tf.float32)
      _, loss = model.call_simple(inputs=ids(length), targets=ids(target_length),
                                  compute_loss=True,
                                  mode=tf.estimator.ModeKeys.TRAIN,
                                  variable_dtype=vdt)
      variables = mtf_graph.trainable_variables
      grads = mtf.gradients([loss], [v.outputs[0] for v in variables])
      opt = mtf.optimize.AdafactorOptimizer()
      updates = opt.apply_grads(grads, variables)
      lowering = mtf.Lowering(mtf_graph, {mesh: mtf.placement_mesh_impl.
                                          PlacementMeshImpl([], [], [""])})
      self.loss = lowering.export_to_tf_tensor(loss)
      self.train_op = tf.group([lowering.lowered_operation(u) for u in updates])
      self.params = int(sum(np.prod(v.shape.to_integer_list)  # no optimizer
                            for v in mtf_graph.all_variables   # slots
                            if "_slot_" not in v.name))
      # {name: (shape, bytes per value)}, Adafactor's slots ("_slot_") included
      self.variables = {v.name: (v.shape.to_integer_list, v.master_dtype.size)
                        for v in mtf_graph.all_variables}
      self.init_ops = [tf.global_variables_initializer(),
                       lowering.copy_masters_to_slices()]
    gin.clear_config(clear_constants=True)
    if start:
      self.start()
      self.sess.run([self.train_op, self.loss])  # warm-up (kernels, caches)

  def start(self):
    """Open the session and initialise the variables (allocates them)."""
    import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
    self.sess = tf.Session(graph=self.graph)
    for op in self.init_ops:  # copy_masters_to_slices after the initialiser
      self.sess.run(op)

  def steps_per_second(self, steps):
    t0 = time.perf_counter()
    for _ in range(steps):
      self.sess.run([self.train_op, self.loss])
    return steps / (time.perf_counter() - t0)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--lengths", type=int, nargs="+", default=[128, 256, 512, 1024])
  p.add_argument("--target_length", type=int, default=16)
  p.add_argument("--batch", type=int, default=4)
  p.add_argument("--variants", default=",".join(VARIANTS))
  p.add_argument("--reps", type=int, default=3, help="alternating rounds")
  p.add_argument("--steps", type=int, default=3, help="timed steps per round")
  p.add_argument("--out", default=os.path.join(benchlib.RESULTS, "speed"))
  p.add_argument("--append", action="store_true",
                 help="keep --out's rows at other lengths (a long length "
                 "measured in a later run); each run's stamp is kept")
  args = p.parse_args(argv)
  variants = benchlib.check_variants(p, args.variants.split(","), VARIANTS)
  from synth_mtf import variants as catalogue  # pylint: disable=g-import-not-at-top
  os.makedirs(args.out, exist_ok=True)
  info = dict(benchlib.stamp(), lengths=args.lengths)
  rows = []
  for length in args.lengths:
    models = {}
    for v in variants:
      why = release_cannot(v, length)
      if why:
        print("skip %s at %d: %s" % (v, length, why))
        continue
      print("building %s at length %d" % (v, length), flush=True)
      models[v] = Model(v, length, args.target_length, args.batch)
    times = {v: [] for v in models}
    for rep in range(args.reps):
      order = list(models) if rep % 2 == 0 else list(reversed(list(models)))
      for v in order:
        times[v].append(models[v].steps_per_second(args.steps))
      print("round %d at %d: %s" % (rep, length, {v: round(t[-1], 3) for v, t
                                                  in times.items()}), flush=True)
    # a plain matmul of the model's FFN shape, [batch*length, d_model] x
    # [d_model, d_ff], measured between the rounds' conditions
    mm = round(matmul_gflops(args.batch * length, SIZE["d_model"],
                             SIZE["d_ff"]), 1)
    print("plain TF matmul [%d, %d] x [%d, %d]: %.1f GFLOP/s" % (
        args.batch * length, SIZE["d_model"], SIZE["d_model"], SIZE["d_ff"],
        mm), flush=True)
    base = statistics.median(times["vanilla"]) if "vanilla" in times else None
    fl_base = model_flops("vanilla", length, args.target_length, args.batch)
    for v, t in times.items():
      med = statistics.median(t)
      flops = model_flops(v, length, args.target_length, args.batch)
      ratio = med / base if base else None
      predicted = fl_base / flops
      rows.append({
          "length": length, "variant": v, "description": catalogue.get(v).paper,
          "params": models[v].params, "steps_per_sec": round(med, 4),
          "min": round(min(t), 4), "max": round(max(t), 4),
          "ratio_vs_vanilla": ratio and round(ratio, 3),
          "flop_predicted_ratio": round(predicted, 3),
          "efficiency": ratio and round(ratio / predicted, 3),
          "achieved_gflops": round(3 * flops * med / 1e9, 1),
          "matmul_gflops": mm})
    for m in models.values():
      m.sess.close()
  stamps = [info]
  old = benchlib.read_json(os.path.join(args.out, "speed.json"))
  if args.append and old:
    rows = [r for r in old["rows"] if r["length"] not in args.lengths] + rows
    rows.sort(key=lambda r: r["length"])
    old_stamps = old.get("stamps") or [dict(  # files written before --append
        old["stamp"], lengths=sorted({r["length"] for r in old["rows"]}))]
    stamps = [st for st in old_stamps
              if set(st["lengths"]) - set(args.lengths)] + stamps
  write(rows, stamps, args.out)


def write(rows, stamps, out):
  benchlib.write_csv(os.path.join(out, "speed.csv"), list(rows[0]), rows)
  benchlib.write_json(os.path.join(out, "speed.json"),
                      {"stamps": stamps, "rows": rows})
  cols = ["length", "variant", "steps_per_sec", "min", "max",
          "ratio_vs_vanilla", "flop_predicted_ratio", "efficiency",
          "achieved_gflops", "matmul_gflops", "params"]
  with open(os.path.join(out, "speed.md"), "w") as f:
    f.write("# Training speed, T5.1.1-small dims, batch 4, targets 16\n\n")
    for info in stamps:
      f.write("Lengths %s: %s\n\n" % (", ".join(map(str, info["lengths"])),
                                      benchlib.stamp_line(info)))
    f.write("steps/s: median of the rounds (min, max); ratio_vs_vanilla: median "
            "over vanilla's median; flop_predicted_ratio: vanilla's matmul FLOPs "
            "over the variant's; efficiency: measured ratio / predicted; "
            "achieved_gflops: 3 x forward matmul FLOPs x steps/s; "
            "matmul_gflops: a plain TF matmul of the FFN's shape "
            "[batch*length, d_model] x [d_model, d_ff], same run.\n\n")
    f.write(benchlib.md_table(cols, rows))
  names = sorted({r["variant"] for r in rows})
  benchlib.loglog(
      os.path.join(out, "speed.png"),
      [("training steps/s", {v: [(r["length"], r["steps_per_sec"]) for r in rows
                                 if r["variant"] == v] for v in names})],
      "input length", "speed vs length", stamps)
  print("wrote %s/speed.{csv,md,json,png}" % out)


if __name__ == "__main__":
  main()
