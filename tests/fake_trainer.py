"""Stands in for t5_mesh_transformer in the sweep's claim and ownership tests
(Sweep.trainer = [python, this file]): takes the CLI's flags, "trains" from
the model dir's last checkpoint to utils.run.train_steps, writing a real
(tiny) checkpoint per step and the log lines the sweep reads, or "evaluates"
the steps of eval_checkpoint_step. Appends what it did to $FAKE_TRAINER_RECORD
(one JSON line at start, one at the end). $FAKE_TRAINER_SLEEP: seconds a step.
"""

import json
import os
import re
import sys
import time


def record(**kw):
  with open(os.environ["FAKE_TRAINER_RECORD"], "a") as f:
    f.write(json.dumps(dict(kw, pid=os.getpid(), time=time.time())) + "\n")


def main(argv):
  flags = dict(a[2:].split("=", 1) for a in argv if a.startswith("--model_dir"))
  model_dir = flags["model_dir"]
  params = [a.split("=", 1)[1] for a in argv if a.startswith("--gin_param=")]
  evaluate = [p.split(" = ")[1] for p in params
              if p.startswith("eval_checkpoint_step")]
  steps = [int(p.split(" = ")[1]) for p in params
           if p.startswith("utils.run.train_steps")][-1]
  have = [int(m.group(1)) for m in (re.match(r"model\.ckpt-(\d+)\.index$", n)
                                    for n in os.listdir(model_dir)) if m]
  start = max(have or [0])
  kind = "eval" if evaluate else "train"
  record(event="start", kind=kind, model_dir=model_dir, start=start)
  print("fake trainer pid %d" % os.getpid(), flush=True)
  if evaluate:
    for step in json.loads(evaluate[0].replace("'", '"')) if "[" in (
        evaluate[0]) else [int(evaluate[0])]:
      print("INFO:tensorflow:eval/fake/sequence_accuracy at step %d: %.1f"
            % (step, 10.0 * step), flush=True)
  else:
    import tensorflow.compat.v1 as tf  # pylint: disable=g-import-not-at-top
    with tf.Graph().as_default():
      step_var = tf.get_variable("step", [], tf.float32)
      tf.get_variable("w", [3, 4], tf.float32)  # 12 parameters
      saver = tf.train.Saver(max_to_keep=None)
      with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for step in range(start + 1, steps + 1):
          time.sleep(float(os.environ.get("FAKE_TRAINER_SLEEP", "0")))
          # rate and loss tell the steps apart: loss 1/step, rate step
          print("INFO:tensorflow:global_step/sec: %d" % step)
          print("tf_loss[%f][%d]" % (1.0 / step, step), flush=True)
          sess.run(step_var.assign(step))
          saver.save(sess, os.path.join(model_dir, "model.ckpt"),
                     global_step=step, write_meta_graph=False)
  record(event="end", kind=kind, model_dir=model_dir)


if __name__ == "__main__":
  main(sys.argv[1:])
