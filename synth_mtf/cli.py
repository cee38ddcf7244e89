"""The `synth-mtf` command: analysis tools and sweeps around the stock T5 CLI.

  synth-mtf params     --gin_file F ...          Table 1 parameter counts
  synth-mtf attention  --model_dir D --out_dir O attention maps (.npz + heatmaps)
  synth-mtf histogram  --model_dir D [...]       weight histograms, init vs trained
  synth-mtf alpha      --model_dir D             mixture weights per layer and head
  synth-mtf locality   --model_dir D             attention mass near the diagonal
  synth-mtf sweep FILE --out_dir DIR             gin-configured ablation sweep
  synth-mtf variants                             the variants: labels, gin files
  synth-mtf fit --gin_file F ...                 XLA memory of a training step
"""

import argparse
import os
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _table(rows, header):
  from synth_mtf import tables  # pylint: disable=g-import-not-at-top
  return tables.markdown(header, rows)


def cmd_params(args):
  from synth_mtf import analysis  # pylint: disable=g-import-not-at-top
  configs = [[]]
  if args.all_variants:
    from synth_mtf import variants  # pylint: disable=g-import-not-at-top
    configs = [[v.gin] for v in variants.synthesizers()]
  for extra in configs:
    try:
      rows, meta = analysis.parameter_table(args.gin_file + extra,
                                            args.gin_param or ())
    except (OSError, ValueError) as e:  # a gin file not found, a bad binding
      raise analysis.AnalysisError(
          "%s\nFix --gin_file (a path, or a name on the searched paths) or "
          "--gin_param." % e) from None
    print("\n## %s\n" % " + ".join(args.gin_file + extra))
    print("d = %(d_model)d, h = %(heads)d, d_kv = %(d_kv)d, N = %(max_length)d;"
          " synthesizers %(synthesizers)s\n" % meta)
    print(_table([[r["stack"], r["component"], r["formula"],
                   "" if r["formula_value"] is None else
                   "{:,}".format(r["formula_value"]),
                   "{:,}".format(r["per_layer"]), r["layers"],
                   "{:,}".format(r["total"])] for r in rows],
                 ["stack", "component", "formula (Table 1)", "= formula",
                  "per layer (graph)", "layers", "total"]))
    print("\ntotal parameters: {:,}".format(meta["total"]))


def cmd_attention(args):
  from synth_mtf import analysis  # pylint: disable=g-import-not-at-top
  maps, how = analysis.attention_maps(args.model_dir, args.step, args.text,
                                      args.length)
  maps = analysis.select(maps, args.layer, args.head)
  os.makedirs(args.out_dir, exist_ok=True)
  np.savez(os.path.join(args.out_dir, "attention.npz"),
           **{"%s/%d" % k: v for k, v in maps.items()})
  for stack in sorted({k[0] for k in maps}):
    part = {k: v for k, v in maps.items() if k[0] == stack}
    path = os.path.join(args.out_dir, "attention_%s.png" % stack)
    rows, cols = analysis.heatmap_grid(
        part, path, "%s self-attention (%s)" % (stack, how))
    print("wrote %s (%d layers x %d heads)" % (path, rows, cols))
  print("wrote %s" % os.path.join(args.out_dir, "attention.npz"))


def cmd_histogram(args):
  from synth_mtf import analysis  # pylint: disable=g-import-not-at-top
  from synth_mtf import checkpoints  # pylint: disable=g-import-not-at-top
  series = {}
  names = [os.path.basename(os.path.normpath(d)) for d in args.model_dir]
  if len(set(names)) < len(names):  # same basename: show the parent too
    names = ["/".join(os.path.normpath(d).split(os.sep)[-2:])
             for d in args.model_dir]
  for d, name in zip(args.model_dir, names):
    steps = [args.step]
    if not args.trained_only and 0 in checkpoints.steps(d) and args.step != 0:
      steps = [0, args.step]
    for step in steps:
      maps, _ = analysis.attention_maps(d, step, args.text)
      maps = analysis.select(maps, args.layer)
      series["%s %s" % (name, "init" if step == 0 else "trained")] = maps
  os.makedirs(args.out_dir, exist_ok=True)
  path = os.path.join(args.out_dir, "histogram.png")
  analysis.histograms(series, path, "attention weights")
  rows = []
  for label, maps in series.items():
    for key, att in sorted(maps.items()):
      ent = -(att * np.log(att + 1e-12)).sum(-1).mean()
      rows.append([label, "%s %d" % key, "%.4f" % att.mean(),
                   "%.4f" % att.max(), "%.3f" % ent])
  print(_table(rows, ["model", "layer", "mean", "max", "entropy (nats)"]))
  print("wrote %s" % path)


def cmd_alpha(args):
  from synth_mtf import analysis  # pylint: disable=g-import-not-at-top
  layers = analysis.synthesizer_layers(analysis.read_variables(
      analysis.checkpoint_path(args.model_dir, args.step)), args.model_dir)
  names = analysis.component_names(args.model_dir)
  alphas = {k: analysis.alpha_table(v) for k, v in layers.items()}
  alphas = {k: a for k, a in alphas.items() if a is not None}
  if not alphas:
    raise analysis.AnalysisError(
        "%s is not a mixture: its layers have one synthesizing function, so "
        "there is no alpha." % args.model_dir)
  rows = []
  functions = {}
  for key, a in sorted(alphas.items()):
    functions[key] = names if names and len(names) == a.shape[1] else [
        "fn%d" % i for i in range(a.shape[1])]
    for h in range(a.shape[0]):
      rows.append(["%s %d" % key, h] + ["%.3f" % x for x in a[h]])
  print(_table(rows, ["layer", "head"] + functions[sorted(alphas)[0]]))
  os.makedirs(args.out_dir, exist_ok=True)
  path = os.path.join(args.out_dir, "alpha.png")
  analysis.alpha_heatmap(alphas, functions, path, "softmax(alpha) per head")
  print("wrote %s" % path)


def cmd_locality(args):
  from synth_mtf import analysis  # pylint: disable=g-import-not-at-top
  maps, how = analysis.attention_maps(args.model_dir, args.step, args.text)
  maps = analysis.select(maps, args.layer, args.head)
  rows = []
  for key, att in sorted(maps.items()):
    n = att.shape[-1]
    uniform = np.mean([min(n, i + args.window + 1) - max(0, i - args.window)
                       for i in range(n)]) / n
    for h, score in enumerate(analysis.locality(att, args.window)):
      rows.append(["%s %d" % key, h if args.head is None else args.head,
                   "%.3f" % score, "%.3f" % uniform])
  print("attention mass within +-%d of the diagonal (%s)\n" % (args.window, how))
  print(_table(rows, ["layer", "head", "locality", "uniform attention"]))


def _common(p, model_dir=True):
  if model_dir:
    p.add_argument("--model_dir", required=True,
                   help="a model_dir written by t5_mesh_transformer")
  p.add_argument("--step", type=int, default=None,
                 help="checkpoint step (default: latest)")
  p.add_argument("--text", default=None,
                 help="input text, for input-dependent synthesizers (Dense)")
  p.add_argument("--layer", default=None, help="only this layer, "
                 "e.g. encoder/0")
  p.add_argument("--head", type=int, default=None, help="only this head")


def main(argv=None):
  parser = argparse.ArgumentParser(
      prog="synth-mtf", description="Synthesizer tools for Mesh TensorFlow / T5",
      formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
  sub = parser.add_subparsers(dest="command", required=True)

  p = sub.add_parser("params", help="parameter counts per layer type in the "
                     "form of the paper's Table 1, from gin configs, no training")
  p.add_argument("--gin_file", action="append", required=True,
                 help="e.g. models/t5.1.1.small.gin and "
                 "models/synthesizer/random.gin")
  p.add_argument("--gin_param", action="append", help="extra gin binding")
  p.add_argument("--all_variants", action="store_true",
                 help="one table per Synthesizer variant "
                 "(gin/models/synthesizer/)")
  p.set_defaults(func=cmd_params)

  p = sub.add_parser("attention", help="attention weights per layer and head "
                     "as .npz and heatmaps (Figures 4-7)")
  _common(p)
  p.add_argument("--length", type=int, default=None,
                 help="rows/columns of Random tables to show (default all)")
  p.add_argument("--out_dir", required=True)
  p.set_defaults(func=cmd_attention)

  p = sub.add_parser("histogram", help="distribution of attention weights per "
                     "layer, at init (step 0) and trained (Figures 2-3)")
  p.add_argument("--model_dir", action="append", required=True,
                 help="one or two model dirs, side by side")
  p.add_argument("--step", type=int, default=None)
  p.add_argument("--text", default=None)
  p.add_argument("--layer", default=None)
  p.add_argument("--trained_only", action="store_true")
  p.add_argument("--out_dir", required=True)
  p.set_defaults(func=cmd_histogram)

  p = sub.add_parser("alpha", help="learned mixture weights per layer and head")
  p.add_argument("--model_dir", required=True)
  p.add_argument("--step", type=int, default=None)
  p.add_argument("--out_dir", required=True)
  p.set_defaults(func=cmd_alpha)

  p = sub.add_parser("locality", help="attention mass within +-window of the "
                     "diagonal per layer and head")
  _common(p)
  p.add_argument("--window", type=int, default=1)
  p.set_defaults(func=cmd_locality)

  p = sub.add_parser("sweep", help="run a gin-configured sweep through the "
                     "stock t5_mesh_transformer CLI; resumes where it stopped")
  p.add_argument("sweep_file", help="a sweep gin file (see gin/sweeps/)")
  p.add_argument("--out_dir", required=True,
                 help="one sub-directory (model_dir) per run, plus results.*")
  p.add_argument("--gin_param", action="append",
                 help="extra binding for the sweep file")
  p.add_argument("--only", action="append",
                 help="run only this run id (repeatable): one job per run; "
                 "jobs may share --out_dir (each run is claimed, the tables "
                 "rebuilt from every run's result)")
  p.add_argument("--max_runs", type=int, default=None,
                 help="stop after this many runs (the rest resume later)")
  p.set_defaults(func=cmd_sweep)

  p = sub.add_parser("variants", help="the catalogue: each variant's label "
                     "(as sweeps and benchmarks name it), paper name, gin files")
  p.set_defaults(func=cmd_variants)

  from synth_mtf import fit  # pylint: disable=g-import-not-at-top
  p = sub.add_parser("fit", help="before a TPU job: compile its training "
                     "step with XLA here, print its memory and whether it "
                     "fits 16/32 GiB", description=fit.__doc__.split("\n\n")[0])
  fit.add_arguments(p)
  p.set_defaults(func=fit.cmd_fit)

  args = parser.parse_args(argv)
  from synth_mtf import analysis  # pylint: disable=g-import-not-at-top
  from synth_mtf import checkpoints  # pylint: disable=g-import-not-at-top
  try:
    args.func(args)
  except (analysis.AnalysisError, checkpoints.CheckpointError) as e:
    parser.exit(2, "synth-mtf %s: error: %s\n" % (args.command, e))


def cmd_variants(args):
  del args
  from synth_mtf import variants  # pylint: disable=g-import-not-at-top
  print(_table([(v.label, v.paper, v.gin or "", v.encoder_only or "",
                 "; ".join(v.bindings)) for v in variants.CATALOGUE],
               ["label", "paper", "gin file (bi, lm)", "encoder-only",
                "bindings"]))


def cmd_sweep(args):
  import synth_mtf  # pylint: disable=g-import-not-at-top
  from synth_mtf import sweep  # pylint: disable=g-import-not-at-top
  if not os.path.exists(args.sweep_file):
    candidate = os.path.join(synth_mtf.GIN_DIR, args.sweep_file)
    if not os.path.exists(candidate):
      raise SystemExit("sweep file %r not found (also not in %s)"
                       % (args.sweep_file, synth_mtf.GIN_DIR))
    args.sweep_file = candidate
  sweep.main(args)


if __name__ == "__main__":
  sys.exit(main())
