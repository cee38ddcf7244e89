"""The `synth-mtf` command: sweeps and tools around the stock T5 CLI.

  synth-mtf sweep FILE --out_dir DIR   run a gin-configured ablation sweep
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _sweep_parser(sub):
  p = sub.add_parser("sweep", help="run a gin-configured sweep through the "
                     "stock t5_mesh_transformer CLI; resumes where it stopped")
  p.add_argument("sweep_file", help="a sweep gin file (see gin/sweeps/)")
  p.add_argument("--out_dir", required=True,
                 help="one sub-directory (model_dir) per run, plus results.*")
  p.add_argument("--gin_param", action="append",
                 help="extra binding for the sweep file, e.g. "
                 "\"Sweep.bindings = ['utils.run.train_steps = 10']\"")
  p.add_argument("--only", action="append",
                 help="run only this run id (repeatable): one job per run on "
                 "a cluster")
  p.add_argument("--max_runs", type=int, default=None,
                 help="stop after this many runs (the rest resume later)")

  def run(args):
    from synth_mtf import sweep  # pylint: disable=g-import-not-at-top
    path = args.sweep_file
    if not os.path.exists(path):
      import synth_mtf  # pylint: disable=g-import-not-at-top
      candidate = os.path.join(synth_mtf.GIN_DIR, path)
      if not os.path.exists(candidate):
        raise SystemExit("sweep file %r not found (also not in %s)"
                         % (path, synth_mtf.GIN_DIR))
      args.sweep_file = candidate
    sweep.main(args)
  p.set_defaults(func=run)


def main(argv=None):
  parser = argparse.ArgumentParser(
      prog="synth-mtf", description="Synthesizer tools for Mesh TensorFlow / T5")
  sub = parser.add_subparsers(dest="command", required=True)
  _sweep_parser(sub)
  args = parser.parse_args(argv)
  args.func(args)


if __name__ == "__main__":
  sys.exit(main())
