"""bench/xla_memory.py's tables from stubbed rows: a variant that stops (its
variables alone pass the cap) and the longer lengths it then does not run."""

import os
import sys

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench")
GIB = 2 ** 30


def xla_memory():
  if BENCH not in sys.path:  # as when run as a script: bench/ on the path
    sys.path.insert(0, BENCH)
  import xla_memory as module  # pylint: disable=g-import-not-at-top
  return module


def row(length, status, total=None, params=None, note=""):
  return dict(variant="R", dtype="float32", length=length, stamp="d",
              status=status, total_bytes=total, input_bytes=None,
              param_bytes=params, slot_bytes=0 if params else None,
              compile_s=10.0 if total else None, note=note)


def test_stop_then_not_run_rows(tmp_path):
  m = xla_memory()
  rows = [row(512, "ok", total=3 * GIB),
          row(1024, "too_big", params=20 * GIB),
          row(2048, "too_big", note="not run: too_big at 1024")]
  m.write(str(tmp_path), rows, [{"date": "d", "command": "c", "commit": "x",
                                 "machine": "m"}])
  text = (tmp_path / "xla_memory.md").read_text()
  line = next(l for l in text.splitlines() if l.startswith("| R |"))
  cells = [c.strip() for c in line.strip("|").split("|")]
  # 512, 1024 (its variables' 20 GiB, a lower bound), 2048 (not measured)
  assert cells[1:4] == ["3.00", "(20.00) too_big", "too_big"]
  assert m.longest_fitting(rows, "R", "float32", 16) == (512, 1024)
  assert m.longest_fitting(rows, "R", "float32", 32) == (512, None)


def test_next_to_tf_runtime():
  m = xla_memory()
  rows = [row(512, "ok", total=3 * GIB), row(1024, "too_big", params=20 * GIB)]
  tf_rows = [dict(variant="R", length=512, status="ok",
                  peak_rss_bytes=4 * GIB),
             dict(variant="R", length=1024, status="oom",
                  peak_rss_bytes=16.5 * GIB),
             dict(variant="R", length=2048, status="oom",
                  peak_rss_bytes=None),
             dict(variant="Fix", length=512, status="ok",
                  peak_rss_bytes=GIB)]
  text = m.tf_section(rows, tf_rows)
  line = next(l for l in text.splitlines() if l.startswith("| R |"))
  cells = [c.strip() for c in line.strip("|").split("|")]
  assert cells[1:] == ["3.00 / 4.00", "too_big / oom (>16.50)", "- / oom"]
  # a variant with TF rows and no XLA rows still shows TF's
  assert "| Fix | - / 1.00 |" in text
