"""A tiny smoke of each benchmark (the real runs are committed under
bench/results/): they run end to end and write their tables (slow)."""

import csv
import os
import re
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
BENCH = os.path.join(os.path.dirname(__file__), "..", "bench")
DATA = os.environ.get("SYNTH_MTF_DATA", os.path.join(
    os.path.dirname(__file__), "..", "..", "shared", "data"))


def run(*args):
  proc = subprocess.run([sys.executable] + list(args), capture_output=True,
                        text=True, timeout=1200)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
  return proc.stdout


def test_speed_smoke(tmp_path):
  run(os.path.join(BENCH, "speed.py"), "--lengths", "16", "--variants",
      "vanilla,R", "--reps", "1", "--steps", "1", "--out", str(tmp_path))
  with open(tmp_path / "speed.csv") as f:
    rows = {r["variant"]: r for r in csv.DictReader(f)}
  assert float(rows["vanilla"]["ratio_vs_vanilla"]) == 1.0
  assert float(rows["R"]["flop_predicted_ratio"]) > 1.0  # R drops Q, K, QK^T
  assert int(rows["R"]["params"]) != int(rows["vanilla"]["params"])
  assert (tmp_path / "speed.png").exists() and (tmp_path / "speed.md").exists()
  # a longer length measured later joins the table; the first run's rows stay
  run(os.path.join(BENCH, "speed.py"), "--lengths", "32", "--variants",
      "vanilla", "--reps", "1", "--steps", "1", "--out", str(tmp_path),
      "--append")
  with open(tmp_path / "speed.csv") as f:
    kept = [(r["length"], r["variant"]) for r in csv.DictReader(f)]
  assert kept == [("16", "vanilla"), ("16", "R"), ("32", "vanilla")]
  assert open(tmp_path / "speed.md").read().count("Lengths ") == 2


@pytest.mark.skipif(not os.path.isdir(DATA), reason="no ../shared/data")
def test_quality_smoke(tmp_path):
  args = [os.path.join(BENCH, "quality.py"), "lm", "--data", DATA, "--seeds",
          "1", "--steps", "4", "--eval_every", "2", "--variants",
          "R,stock_R/unpacked", "--out", str(tmp_path), "--work_dir",
          str(tmp_path / "runs")]
  run(*args)
  with open(tmp_path / "quality_lm.csv") as f:
    rows = list(csv.DictReader(f))
  # a learning curve: one row per (dataset, variant, seed, step)
  assert [(r["variant"], r["seed"], r["step"]) for r in rows] == [
      ("R", "1", "2"), ("R", "1", "4"), ("stock_R/unpacked", "1", "2"),
      ("stock_R/unpacked", "1", "4")]
  assert all(r["dataset"] == "wikitext2" for r in rows)
  for a, b in zip(rows[::2], rows[1::2]):  # untrained -> 2 steps at lr 0.01
    assert 1.0 < float(b["perplexity"]) < float(a["perplexity"]) < 300.0
  md = open(tmp_path / "quality_lm.md").read()
  assert ("2 of 2 runs trained to step 4 or further" in md
          and "| step | ranking |" in md)
  # the stock layer ran unpacked (its operative config says so)
  (stock,) = (tmp_path / "runs" / "lm" / "wikitext2").glob("stock_R_*")
  config = (stock / "operative_config.gin").read_text()
  assert "mesh_train_dataset_fn.pack = False" in config
  assert "Synthesizer.synthesize_mode = 'random'" in config
  # finished runs are not trained again, even without their model dirs: the
  # committed results JSON is the state a later session resumes from
  again = run(*args[:-1], str(tmp_path / "fresh_runs"))
  assert again.count("committed before, skipped") == 2
  assert not (tmp_path / "fresh_runs").exists()
  with open(tmp_path / "quality_lm.csv") as f:
    assert list(csv.DictReader(f)) == rows
  # more steps train a committed run on from its model dir (its checkpoint at
  # step 2 is not written again; the saver re-saves the one it starts from)
  # and keep the other row as it was
  (model,) = (tmp_path / "runs" / "lm" / "wikitext2").glob("R_*")
  written = {n: os.stat(model / n).st_mtime_ns for n in ["model.ckpt-2.index"]}
  longer = args[:7] + ["6"] + args[8:11] + ["R"] + args[12:]
  assert "committed to step 4, extended to 6" in run(*longer)
  with open(tmp_path / "quality_lm.csv") as f:
    extended = list(csv.DictReader(f))
  assert [(r["variant"], r["step"]) for r in extended] == [
      ("R", "2"), ("R", "4"), ("R", "6"), ("stock_R/unpacked", "2"),
      ("stock_R/unpacked", "4")]
  assert extended[:2] == rows[:2] and extended[3:] == rows[2:]
  assert {n: os.stat(model / n).st_mtime_ns for n in written} == written
  # and evaluates only the new step: steps 2 and 4 come from before
  restored = re.findall(r"Restoring parameters from .*model\.ckpt-(\d+)\n",
                        (model / "eval.log").read_text())
  assert set(restored) == {"6"}, restored
  # another eval schedule than the committed curves': a clear error
  proc = subprocess.run([sys.executable] + longer[:9] + ["3"] + longer[10:],
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode != 0
  assert "evaluated at other steps than every 3" in proc.stderr


def test_decode_smoke(tmp_path):
  run(os.path.join(BENCH, "decode.py"), "--context", "16", "--batch", "2",
      "--vocab", "64", "--steps", "4", "--variants", "vanilla,R,R+V", "--reps",
      "1", "--out", str(tmp_path))
  with open(tmp_path / "decode.csv") as f:
    rows = {r["variant"]: r for r in csv.DictReader(f)}
  # keys and values, batch x context x (6 heads x 64) floats each
  assert int(rows["vanilla"]["state_bytes_per_layer"]) == 2 * 2 * 16 * 384 * 4
  assert float(rows["R"]["state_vs_vanilla"]) == 0.5  # values only
  assert float(rows["R+V"]["state_vs_vanilla"]) == 1.0  # V needs its keys
  assert float(rows["R"]["tokens_per_sec"]) > 0
  assert (tmp_path / "decode.png").exists() and (tmp_path / "decode.md").exists()


@pytest.mark.skipif(not os.path.isdir(DATA), reason="no ../shared/data")
def test_quality_pretrain_then_finetune_smoke(tmp_path):
  args = [os.path.join(BENCH, "quality.py"), "pretrain", "--data", DATA,
          "--pretrain_steps", "4", "--steps", "4", "--eval_every", "2",
          "--variants", "R", "--seeds", "1", "--pretrain_seeds", "1",
          "--datasets", "sst2", "--out",
          str(tmp_path), "--work_dir", str(tmp_path / "runs")]
  run(*args, "--pretrain_table_steps", "4")
  with open(tmp_path / "quality_pretrain.csv") as f:
    pre = list(csv.DictReader(f))
  assert [(r["dataset"], r["variant"], r["step"]) for r in pre] == [
      ("span_corruption", "R", "2"), ("span_corruption", "R", "4")]
  with open(tmp_path / "quality_finetune.csv") as f:
    fine = list(csv.DictReader(f))
  # steps counted from the start of finetuning, for both rows
  assert [(r["variant"], r["step"]) for r in fine] == [
      ("R/pretrained", "2"), ("R/pretrained", "4"), ("R/scratch", "2"),
      ("R/scratch", "4")]
  runs = tmp_path / "runs"
  # one vocabulary (word pieces) for pretraining and finetuning, its dirs named
  (model,) = (runs / "vocabulary").glob("pieces_*.model")
  tag = model.name[len("pieces_"):-len(".model")]
  (pretrain,) = (runs / "pretrain" / ("span_corruption_pieces_" + tag)).glob(
      "R__*")
  (tuned,) = (runs / "finetune" / ("sst2_pieces_" + tag)).glob("R_pretrained*")
  (scratch,) = (runs / "finetune" / ("sst2_pieces_" + tag)).glob("R_scratch*")
  # finetuned from the copy kept with the tables (what init_checkpoint
  # reads), which later machines start from too
  (kept,) = (tmp_path / "checkpoints" / ("span_corruption_pieces_" + tag)
             ).glob("R__*")
  assert sorted(os.listdir(kept)) == sorted(
      n for n in os.listdir(pretrain) if n.startswith("model.ckpt-4.") and
      not n.endswith(".meta")) + ["result.json"]
  config = (tuned / "operative_config.gin").read_text()
  assert "run.init_checkpoint" in config
  assert "'%s'" % (kept / "model.ckpt-4") in config
  for run_dir in (pretrain, tuned, scratch):
    assert "'%s'" % model in (run_dir / "operative_config.gin").read_text()
  # it started at the pretraining's step 4 and trained 4 more
  assert (tuned / "model.ckpt-4.index").exists()
  assert (tuned / "model.ckpt-8.index").exists()
  assert not (scratch / "model.ckpt-8.index").exists()
  # the pretraining table's run trained on to step 6 on a machine without
  # its model dir: T5 resumes from the kept checkpoint, curve to 4 kept
  shutil.rmtree(pretrain)
  run(*args, "--pretrain_table_steps", "6")
  with open(tmp_path / "quality_pretrain.csv") as f:
    longer = list(csv.DictReader(f))
  assert [r["step"] for r in longer] == ["2", "4", "6"]
  assert longer[:2] == pre
  assert (pretrain / "model.ckpt-6.index").exists()
  assert not (pretrain / "model.ckpt-2.index").exists()  # not trained anew
