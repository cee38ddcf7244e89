"""What the benchmarks share: the run's stamp, the table writers, plotting.

Every benchmark writes its results as CSV (one row per measurement), JSON (the
rows and the stamps of the runs that measured them, so a later run can resume
or append), Markdown and PNG, each stamped with command, commit, date and
machine. Run a benchmark as `python bench/<name>.py`; its directory is then on
sys.path and this module puts the repository root there too.
"""

import csv
import datetime
import json
import os
import platform
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
if ROOT not in sys.path:  # synth_mtf and tasks/ from this checkout
  sys.path.insert(0, ROOT)

from synth_mtf import tables  # noqa: E402  pylint: disable=g-import-not-at-top

# T5.1.1-small dims, the size every speed and memory figure is measured at
SIZE = dict(d_model=512, d_ff=1024, num_heads=6, d_kv=64, num_layers=8,
            vocab=32128)
GIB = 2 ** 30


def stamp():
  """{command, commit, date, machine} of this run."""
  try:
    commit = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"],
                                     cwd=HERE, text=True).strip()
  except (OSError, subprocess.CalledProcessError):
    commit = "unknown"
  return {"command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
          "commit": commit, "date": datetime.datetime.utcnow().isoformat() + "Z",
          "machine": "%s, %d cores, %s" % (platform.processor() or
                                           platform.machine(), os.cpu_count(),
                                           platform.platform())}


def stamp_line(info):
  return "`%(command)s` at commit %(commit)s, %(date)s, on %(machine)s." % info


def write_csv(path, columns, rows):
  """rows (dicts) under the given columns; keys outside them are left out."""
  with open(path, "w", newline="") as f:
    w = csv.DictWriter(f, columns, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)


def write_json(path, obj):
  # whole or not at all: a sweep stopped while writing keeps the last table;
  # the pid keeps two writers of one table (two shards of a bench) apart
  tmp = "%s.%d.tmp" % (path, os.getpid())
  try:
    with open(tmp, "w") as f:
      json.dump(obj, f, indent=1)
  except BaseException:
    os.remove(tmp)
    raise
  os.replace(tmp, path)


def read_json(path, default=None):
  if not os.path.exists(path):
    return default
  with open(path) as f:
    return json.load(f)


md_row = tables.row


def md_table(columns, rows, header=None):
  """A Markdown table of rows (dicts, or sequences in column order)."""
  cells = [[r[c] for c in columns] if isinstance(r, dict) else r
           for r in rows]
  return tables.markdown(header or columns, cells) + "\n"


def pyplot():
  """matplotlib.pyplot on the file-only backend (no display here)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def colour(plt, i, n):
  """Distinct colours for up to 20 series (tab10 would repeat past 10)."""
  return plt.cm.tab20(i / max(1, n - 1))


def slope(points):
  """Least-squares slope of log y vs log x; None below two distinct x."""
  points = [(x, y) for x, y in points if y]
  if len({x for x, _ in points}) < 2:
    return None
  xs, ys = zip(*points)
  return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def loglog(path, panels, xlabel, title, stamps):
  """Log-log panels [(ylabel, {series: [(x, y)]})], one marker per series,
  the fitted slope in the legend, the runs' stamps along the bottom."""
  plt = pyplot()
  fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.6))
  for ax, (ylabel, series) in zip(np.atleast_1d(axes), panels):
    names = list(series)
    for i, v in enumerate(names):
      pts = sorted(series[v])
      if not pts:
        continue
      k = slope(pts)
      ax.plot(*zip(*pts), marker="os^"[i % 3], color=colour(plt, i, len(names)),
              label=v + ("" if k is None else " (slope %.2f)" % k))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=6, ncol=2)
  fig.suptitle(title, fontsize=9)
  fig.text(0.01, 0.005, "\n".join("%s @ %s, %s" % (
      st["command"], st["commit"], st["machine"]) for st in stamps)[:600],
           fontsize=5, va="bottom")
  fig.tight_layout(rect=(0, 0.04 + 0.015 * len(stamps), 1, 1))
  fig.savefig(path, dpi=90)
  plt.close(fig)


def check_variants(parser, asked, allowed):
  """argparse error naming the unknown labels and the choices."""
  unknown = [v for v in asked if v not in allowed]
  if unknown:
    parser.error("unknown variants %s; choose from %s" % (
        ", ".join(unknown), ", ".join(allowed)))
  return asked
