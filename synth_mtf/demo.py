"""The README's main job: train and evaluate a small Synthesizer T5 on CPU with the
stock t5_mesh_transformer CLI, on a task generated offline (synth_mtf_reverse).

  python -m synth_mtf.demo [variant] [--model_dir DIR] [--steps N]

variant: one of our Synthesizers by label (R, D+V, ...; `synth-mtf variants`)
or by gin file name (random, dense_plus_vanilla, ...). Prints compact progress
while the CLI runs, then the decoded accuracy and a few predictions.
"""

import argparse
import glob
import os
import re
import time

from synth_mtf import runner
from synth_mtf import variants as catalogue


def variants():
  """{choice: Variant}: our Synthesizers by label and by gin file name."""
  out = {}
  for v in catalogue.synthesizers():
    out[v.label] = out[v.stem] = v
  return out


def cli_command(model_dir, variant, extra_gin_files=(), params=()):
  return runner.cli_command(
      model_dir, ["experiments/demo_reverse.gin", variant.gin] +
      list(extra_gin_files), params)


def run_cli(cmd, log_path, on_line):
  try:
    runner.run_cli(cmd, log_path, on_line)
  except runner.CliError as e:
    raise SystemExit(str(e))


def main(argv=None):
  choices = variants()
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("variant", nargs="?", default="random",
                      help="one of: %s" % ", ".join(choices))
  parser.add_argument("--model_dir", default=None,
                      help="default runs/demo_<variant>; an existing one resumes")
  parser.add_argument("--steps", type=int, default=1000)
  args = parser.parse_args(argv)
  if args.variant not in choices:
    parser.error("unknown variant %r; choose one of: %s"
                 % (args.variant, ", ".join(choices)))
  variant = choices[args.variant]
  model_dir = os.path.abspath(args.model_dir or
                              os.path.join("runs", "demo_" + args.variant))
  os.makedirs(model_dir, exist_ok=True)
  print("synth-mtf demo: %s on synth_mtf_reverse, %d steps, model_dir %s"
        % (variant.paper, args.steps, model_dir), flush=True)

  rate, shown = [None], [0]

  def train_line(line):
    m = runner.RATE_RE.search(line)
    if m:
      rate[0] = float(m.group(1))
    m = runner.STEP_RE.search(line)
    if m and int(m.group(2)) // 100 > shown[0]:
      shown[0] = int(m.group(2)) // 100
      print("  train step %5s/%d  loss %.4f%s" % (
          m.group(2), args.steps, float(m.group(1)),
          "  (%.1f steps/s)" % rate[0] if rate[0] else ""), flush=True)

  t0 = time.time()
  run_cli(cli_command(model_dir, variant,
                      params=["utils.run.train_steps=%d" % args.steps]),
          os.path.join(model_dir, "train.log"), train_line)
  t_train = time.time() - t0
  print("  trained in %.0f s; decoding the validation split..." % t_train,
        flush=True)

  metrics = {}

  def eval_line(line):
    metrics.update(runner.metrics(line))

  run_cli(cli_command(
      model_dir, variant, extra_gin_files=["eval.gin", "greedy_decode.gin"],
      params=["run.dataset_split='validation'",
              "utils.get_variable_dtype.activation_dtype='float32'",
              "utils.run.batch_size=('sequences_per_batch', 64)",
              # eval.gin sets 128; decode no longer than the targets
              "Bitransformer.decode.max_decode_length=16",
              "eval_checkpoint_step=%d" % args.steps]),
          os.path.join(model_dir, "eval.log"), eval_line)
  if not metrics:
    raise SystemExit("the evaluation printed no metric; see %s/eval.log"
                     % model_dir)
  preds = sorted(glob.glob(os.path.join(model_dir, "validation_eval",
                                        "*_%d_predictions" % args.steps)))
  inputs = sorted(glob.glob(os.path.join(model_dir, "validation_eval",
                                         "*_inputs")))
  if preds and inputs:
    with open(inputs[0]) as fi, open(preds[0]) as fp:
      for i, (a, b) in enumerate(zip(fi, fp)):
        if i == 3:
          break
        a = re.sub(r"^b'(.*)'$", r"\1", a.strip())
        print("  %-26s -> %s" % (a, b.strip()))
  for name, (step, value) in sorted(metrics.items()):
    print("RESULT %s = %.2f at step %d (%s, train %.0f s, total %.0f s)"
          % (name, value, step, variant.paper, t_train, time.time() - t0))


if __name__ == "__main__":
  main()
