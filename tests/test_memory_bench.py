"""A tiny run of bench/memory.py (the real run is under bench/results/memory/):
its rows, the parameter bytes the synthesizer changes, the guard that stops a
child above its memory cap, resuming, and decoding vs context (slow)."""

import csv
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
MEMORY = os.path.join(os.path.dirname(__file__), "..", "bench", "memory.py")
# what --tiny binds (and T5's relative-position buckets, one table a stack)
D_MODEL, HEADS, D_KV, LAYERS, BUCKETS = 32, 2, 16, 2, 32


def run(*args):
  proc = subprocess.run([sys.executable, MEMORY] + [str(a) for a in args],
                        capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
  return proc.stdout


def rows_of(path):
  with open(path) as f:
    reader = csv.DictReader(f)
    return reader.fieldnames, list(reader)


def test_memory_smoke(tmp_path):
  out, logs = tmp_path / "out", tmp_path / "logs"
  args = ["--tiny", "--lengths", 16, 64, "--variants", "vanilla,R", "--steps",
          1, "--out", out, "--log_dir", logs]
  run(*args)
  columns, rows = rows_of(out / "memory.csv")
  assert columns == ["length", "variant", "peak_rss_bytes", "param_bytes",
                     "optimizer_bytes", "steps_per_sec", "status"]
  assert [(r["length"], r["variant"]) for r in rows] == [
      ("16", "vanilla"), ("16", "R"), ("64", "vanilla"), ("64", "R")]
  by = {(int(r["length"]), r["variant"]): r for r in rows}
  for r in rows:
    assert r["status"] == "ok"
    params, slots = int(r["param_bytes"]), int(r["optimizer_bytes"])
    assert 0 < slots < 3 * params
    # bytes, not KiB: a TensorFlow process holds hundreds of MiB
    assert 2 ** 27 < int(r["peak_rss_bytes"]) < 16 * 2 ** 30
    assert float(r["steps_per_sec"]) > 0
  for n in (16, 64):
    # R adds a heads x N x N table to each self-attention layer (encoder and
    # decoder) and drops its q and k; it has no relative-position bias
    expected = (2 * LAYERS * (HEADS * n * n - 2 * D_MODEL * HEADS * D_KV)
                - 2 * HEADS * BUCKETS) * 4
    got = int(by[n, "R"]["param_bytes"]) - int(by[n, "vanilla"]["param_bytes"])
    assert got == expected, (n, got, expected)
  assert by[16, "vanilla"]["param_bytes"] == by[64, "vanilla"]["param_bytes"]
  md = (out / "memory.md").read_text()
  assert "`memory.py --tiny --lengths 16 64" in md and "commit" in md
  assert "| vanilla | 64 (the longest run) |" in md  # the summary
  assert (out / "memory.png").stat().st_size > 0
  # resumable: measured rows are not run again
  again = run(*args)
  assert again.count("already measured (ok), skipped") == 4
  # a child above its memory cap is killed, its row says oom and the run goes
  # on; the longer length is not run; a build past its cap is too_slow
  first = by
  run("--tiny", "--lengths", 16, 64, "--variants", "D", "--steps", 1,
      "--rss_cap_gib", 0.05, "--out", out, "--log_dir", logs)
  run("--tiny", "--lengths", 16, "--variants", "FR", "--steps", 1,
      "--build_cap_s", 1, "--out", out, "--log_dir", logs)
  _, rows = rows_of(out / "memory.csv")
  by = {(int(r["length"]), r["variant"]): r for r in rows}
  assert len(rows) == 7
  assert by[16, "D"]["status"] == by[64, "D"]["status"] == "oom"
  assert by[16, "D"]["param_bytes"] == by[16, "D"]["steps_per_sec"] == ""
  assert int(by[16, "D"]["peak_rss_bytes"]) > 0.05 * 2 ** 30
  assert by[64, "D"]["peak_rss_bytes"] == ""  # not run
  assert by[16, "FR"]["status"] == "too_slow"
  assert all(by[k] == first[k] for k in first)  # the first run's rows stay
  md = (out / "memory.md").read_text()
  assert "not run: oom at 16" in md and md.count("- length") == 3


def test_decode_vs_context_smoke(tmp_path):
  run("--decode", "--contexts", 16, "--decode_variants", "vanilla,R",
      "--decode_batch", 2, "--decode_vocab", 64, "--decode_steps", 2,
      "--decode_reps", 1, "--out", tmp_path, "--log_dir", tmp_path / "logs")
  _, rows = rows_of(tmp_path / "decode_context.csv")
  by = {r["variant"]: r for r in rows}
  assert [(r["context"], r["status"]) for r in rows] == [("16", "ok")] * 2
  # keys and values, batch x context x (6 heads x 64) floats each; R: values
  assert int(by["vanilla"]["state_bytes_per_layer"]) == 2 * 2 * 16 * 384 * 4
  assert int(by["R"]["state_bytes_per_layer"]) == 2 * 16 * 384 * 4
  assert float(by["R"]["tokens_per_sec"]) > 0
  assert (tmp_path / "decode_context.md").exists()
