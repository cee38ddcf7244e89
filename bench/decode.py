"""Decoding speed and decode-state size of a decoder-only LM, per attention variant.

  python bench/decode.py [--context 512] [--batch 16] [--variants vanilla,R,...]

Every model is a decoder-only LM (utils.run.model_type = 'lm') with T5.1.1-small
dims (8 layers, d_model 512, d_ff 1024, 6 heads of 64, T5's 32,128-token
vocabulary), identical but for its self-attention. Each one greedily generates
`steps` tokens with mesh-tensorflow's own Unitransformer.sample_autoregressive
(the loop the stock CLI's decoding of an LM runs), never stopping early. Its
cache always spans the whole context (mtf attends over all `context` positions,
masked, at every step), so a step costs the same at any position and a few
dozen steps measure decoding at that context. The variants are timed in
alternation, several rounds; the table gives the median tokens/s
(batch x steps / seconds), the spread, the ratio to vanilla, and the
decode state each layer keeps (the incremental caches: keys and values for
dot-product attention, values only for a pure synthesizer), in tensors and bytes.
"""

import argparse
import os
import statistics
import time

import numpy as np

import benchlib
from benchlib import SIZE
from speed import variant_config

DEFAULT_VARIANTS = ["vanilla", "stock_R", "R", "Fix", "FR", "D", "FD", "R+V",
                    "D+V"]


class Decoder(object):
  """One variant's generation loop, in its own graph and session."""

  def __init__(self, variant, context, batch, vocab, steps):
    import gin  # pylint: disable=g-import-not-at-top
    import mesh_tensorflow as mtf  # pylint: disable=g-import-not-at-top
    from mesh_tensorflow.transformer import utils as mtf_utils  # pylint: disable=g-import-not-at-top
    import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
    from synth_mtf import model_graph  # pylint: disable=g-import-not-at-top
    files, bindings = variant_config(variant)
    bindings += ["max_length = %d" % context,
                 "SynthesizerAttention.max_length = %d" % context,
                 "utils.run.model_type = 'lm'"]
    model_graph.parse(files, bindings)
    self.graph = tf.Graph()
    with self.graph.as_default():
      tf.set_random_seed(0)
      mtf_graph = mtf.Graph()
      mesh = mtf.Mesh(mtf_graph, "mesh")
      model = mtf_utils.build_model("lm", input_vocab_size=vocab,
                                    output_vocab_size=vocab)
      shape = mtf.Shape([mtf.Dimension("batch", batch),
                         mtf.Dimension("length", context)])
      vdt = mtf.VariableDType(tf.float32, tf.float32, tf.float32)
      prompt = mtf.zeros(mesh, shape, tf.int32)
      out = model.sample_autoregressive(
          prompt, stop_at_token=1, max_steps=steps, never_end=True,
          temperature=0.0, has_partial_sequences=False, variable_dtype=vdt)
      self.tokens = batch * steps
      self.states = self._state_shapes(model, prompt, vdt)
      lowering = mtf.Lowering(mtf_graph, {mesh: mtf.placement_mesh_impl.
                                          PlacementMeshImpl([], [], [""])})
      self.out = lowering.export_to_tf_tensor(out)
      self.params = int(sum(np.prod(v.shape.to_integer_list)
                            for v in mtf_graph.all_variables))
      self.sess = tf.Session(graph=self.graph)
      self.sess.run(tf.global_variables_initializer())
      self.sess.run(lowering.copy_masters_to_slices())
    gin.clear_config(clear_constants=True)

  @staticmethod
  def _state_shapes(model, prompt, vdt):
    """Shapes of the decode state: the new_states of a first_part pass, which is
    what sample_autoregressive feeds its loop (built here only to read them;
    TensorFlow prunes it from the timed run)."""
    import mesh_tensorflow as mtf  # pylint: disable=g-import-not-at-top
    from mesh_tensorflow.transformer import transformer  # pylint: disable=g-import-not-at-top
    import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
    positions = mtf.range(prompt.mesh, prompt.shape.dims[-1], tf.int32)
    ctx = transformer.Context(
        model=model, mesh=prompt.mesh, batch_dims=prompt.shape.dims[:-1],
        length_dim=prompt.shape.dims[-1], variable_dtype=vdt,
        mode="first_part", position=positions, position_is_default=True,
        new_states=[], initial_position=0, sequence_id=None,
        constant_states=[], shared_params=None, write_priority=positions,
        read_priority=positions, inputs=prompt)
    with tf.variable_scope(model.name, reuse=True):
      model._call_internal(ctx, prompt)  # pylint: disable=protected-access
    return [(s.shape.to_integer_list, s.dtype.size) for s in ctx.new_states]

  def tokens_per_second(self):
    t0 = time.perf_counter()
    self.sess.run(self.out)
    return self.tokens / (time.perf_counter() - t0)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--context", type=int, default=512)
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--vocab", type=int, default=SIZE["vocab"])
  p.add_argument("--steps", type=int, default=64,
                 help="decoding steps per timing (each over the full context)")
  p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
  p.add_argument("--reps", type=int, default=3, help="alternating rounds")
  p.add_argument("--out", default=os.path.join(benchlib.RESULTS, "decode"))
  args = p.parse_args(argv)
  variants = benchlib.check_variants(p, args.variants.split(","),
                                     DEFAULT_VARIANTS)
  from synth_mtf import variants as catalogue  # pylint: disable=g-import-not-at-top
  models = {}
  for v in variants:
    print("building %s" % v, flush=True)
    models[v] = Decoder(v, args.context, args.batch, args.vocab, args.steps)
    models[v].tokens_per_second()  # warm-up
  times = {v: [] for v in models}
  for rep in range(args.reps):
    order = variants if rep % 2 == 0 else variants[::-1]
    for v in order:
      times[v].append(models[v].tokens_per_second())
    print("round %d: %s" % (rep, {v: round(t[-1], 1) for v, t in
                                  times.items()}), flush=True)
  layers = SIZE["num_layers"]
  rows = []
  for v, t in times.items():
    states = models[v].states
    state_bytes = sum(int(np.prod(s)) * size for s, size in states) / layers
    rows.append({"variant": v, "description": catalogue.get(v).paper,
                 "tokens_per_sec": round(statistics.median(t), 1),
                 "min": round(min(t), 1), "max": round(max(t), 1),
                 "states_per_layer": len(states) / layers,
                 "state_bytes_per_layer": int(state_bytes),
                 "params": models[v].params})
  base = next((r for r in rows if r["variant"] == "vanilla"), None)
  for r in rows:
    r["speed_vs_vanilla"] = base and round(
        r["tokens_per_sec"] / base["tokens_per_sec"], 3)
    r["state_vs_vanilla"] = base and round(
        r["state_bytes_per_layer"] / base["state_bytes_per_layer"], 3)
  for m in models.values():
    m.sess.close()
  write(rows, benchlib.stamp(), args)


def write(rows, info, args):
  os.makedirs(args.out, exist_ok=True)
  benchlib.write_csv(os.path.join(args.out, "decode.csv"), list(rows[0]), rows)
  benchlib.write_json(os.path.join(args.out, "decode.json"),
                      {"stamp": info, "rows": rows})
  cols = ["variant", "tokens_per_sec", "min", "max", "speed_vs_vanilla",
          "states_per_layer", "state_bytes_per_layer", "state_vs_vanilla",
          "params"]
  with open(os.path.join(args.out, "decode.md"), "w") as f:
    f.write("# Greedy decoding, decoder-only LM, T5.1.1-small dims, context %d, "
            "batch %d, vocabulary %d, float32, %d steps per timing\n\n" % (
                args.context, args.batch, args.vocab, args.steps))
    f.write(benchlib.stamp_line(info) + "\n\n")
    f.write(benchlib.md_table(cols, rows))
  plt = benchlib.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
  names = [r["variant"] for r in rows]
  axes[0].bar(names, [r["tokens_per_sec"] for r in rows], color="#4C72B0",
              yerr=[[r["tokens_per_sec"] - r["min"] for r in rows],
                    [r["max"] - r["tokens_per_sec"] for r in rows]])
  axes[0].set_ylabel("tokens/s")
  axes[1].bar(names, [r["state_bytes_per_layer"] / 2 ** 20 for r in rows],
              color="#DD8452")
  axes[1].set_ylabel("decode state per layer, MiB")
  for ax in axes:
    ax.tick_params(axis="x", rotation=45, labelsize=7)
  fig.suptitle("decoding, context %d, batch %d (%s)" % (
      args.context, args.batch, info["commit"]), fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(args.out, "decode.png"), dpi=90)
  plt.close(fig)
  print("wrote %s/decode.{csv,md,json,png}" % args.out)


if __name__ == "__main__":
  main()
