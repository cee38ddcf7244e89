"""The one Markdown table writer of synth-mtf (the CLI, sweeps, benchmarks)."""


def row(cells):
  """One Markdown table row; None is an empty cell."""
  return "| " + " | ".join("" if c is None else str(c) for c in cells) + " |"


def markdown(header, rows, align=None):
  """A Markdown table (no final newline); `align`: one 'l' or 'r' per column
  (default all left)."""
  rule = "|" + "".join("---:|" if a == "r" else "---|"
                       for a in (align or "l" * len(header)))
  return "\n".join([row(header), rule] + [row(r) for r in rows])
