"""The checkpoints a model_dir holds, and whether one can be read: shared by
the sweeps and the analysis tools (tf.io.gfile, so a gs:// model_dir works)."""

import os
import re

STEP_RE = re.compile(r"^model\.ckpt-(\d+)\.index$")


class CheckpointError(ValueError):
  """A checkpoint that cannot be used: absent, corrupt, or not finite."""


def steps(model_dir):
  """Steps of the checkpoints in model_dir, ascending. The files, not the
  `checkpoint` state file: with keep_checkpoint_max = None mtf's saver lists
  only the latest there."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not tf.io.gfile.isdir(model_dir):
    return []
  found = (STEP_RE.match(n) for n in tf.io.gfile.listdir(model_dir))
  return sorted(int(m.group(1)) for m in found if m)


def latest_step(model_dir):
  """The last checkpoint's step, 0 without one."""
  return (steps(model_dir) or [0])[-1]


def path(model_dir, step):
  return os.path.join(model_dir, "model.ckpt-%d" % step)


def read(model_dir, step):
  """{name: array} of every variable of the checkpoint at `step`; a file that
  is truncated or corrupt is a CheckpointError naming it."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  prefix = path(model_dir, step)
  try:
    reader = tf.train.load_checkpoint(prefix)
  except Exception as e:  # pylint: disable=broad-except
    _unreadable(model_dir, step, [prefix + ".index"], e)
  variables = {}
  for name in reader.get_variable_to_shape_map():
    try:
      variables[name] = reader.get_tensor(name)
    except Exception as e:  # pylint: disable=broad-except
      # TF (IndexError "Read less bytes than requested") names no shard
      _unreadable(model_dir, step, tf.io.gfile.glob(prefix + ".data-*"), e)
  return variables


def _unreadable(model_dir, step, files, error):
  raise CheckpointError(
      "%s cannot be read (%s: %s): %s truncated or corrupt. Pick another "
      "step (checkpoints: %s)." % (
          path(model_dir, step), type(error).__name__,
          str(error).splitlines()[0][:200] if str(error) else "",
          "%s is" % files[0] if len(files) == 1 else
          "one of %s is" % ", ".join(sorted(files)),
          steps(model_dir))) from None


def not_finite(variables):
  """Names of the variables holding NaN or Inf, sorted."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  # bfloat16 (T5's masters) is no numpy floating type: any non-integer,
  # non-text array is checked as float32
  return sorted(n for n, v in variables.items()
                if np.asarray(v).dtype.kind not in "biuOSU" and
                not np.isfinite(np.asarray(v).astype(np.float32)).all())


def read_finite(model_dir, step):
  """read(), refusing a checkpoint with NaN/Inf values (a diverged run) in
  one line naming them and the last checkpoint that is finite."""
  variables = read(model_dir, step)
  bad = not_finite(variables)
  if bad:
    earlier = [s for s in steps(model_dir) if s < step]
    last = next((s for s in reversed(earlier) if _finite(model_dir, s)), None)
    raise CheckpointError(
        "%s has values that are not finite (NaN/Inf; the run diverged) in %d "
        "variables: %s%s; %s." % (
            path(model_dir, step), len(bad), ", ".join(bad[:5]),
            ", ..." if len(bad) > 5 else "",
            "the last finite checkpoint is step %d: pass --step %d" % (
                last, last) if last is not None else
            "no earlier checkpoint is finite"))
  return variables


def _finite(model_dir, step):
  try:
    return not not_finite(read(model_dir, step))
  except CheckpointError:
    return False
