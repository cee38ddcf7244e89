"""bench/quality.py's check of published orderings against the seed spread."""

import importlib
import os
import sys

BENCH = os.path.join(os.path.dirname(__file__), "..", "bench")


def load_quality():
  if BENCH not in sys.path:  # as when run as a script: bench/ on the path
    sys.path.insert(0, BENCH)
  return importlib.import_module("quality")


def test_orderings_claim_only_outside_the_seed_spread():
  quality = load_quality()
  # perplexity (lower is better), two seeds of A and B, one of C
  curves = {
      ("d", "A"): {1: {1: 5.0, 2: 3.9, 3: 3.0}, 2: {1: 5.5, 2: 4.0, 3: 3.1}},
      ("d", "B"): {1: {1: 4.0, 2: 4.1, 3: 3.5}, 2: {1: 4.1, 2: 4.3, 3: 3.6}},
      ("d", "C"): {1: {1: 9.0, 2: 8.0, 3: 7.0}},
      ("d", "E"): {1: {1: 6.0, 2: 3.0, 3: 3.05}, 2: {1: 6.0, 2: 5.0, 3: 3.2}},
  }
  text = quality.orderings(curves, "d", True, "a source",
                           [["A"], ["B", "E"], ["C"]])
  rows = [line for line in text.splitlines() if " ahead of " in line]
  assert rows == [
      # A below B at every seed from step 2 (at step 1 the reverse)
      "| A ahead of B | holds at 3 | 2 |",
      # seeds of A (3.0, 3.1) and E (3.05, 3.2) overlap: no claim
      "| A ahead of E | within the spread at 3 |  |",
      "| A ahead of C | (1 seed) |  |",
      "| B ahead of C | (1 seed) |  |",
      "| E ahead of C | (1 seed) |  |",
  ]
  assert "1 hold, 0 reversed, 4 within the spread" in text
  # higher is better: the same numbers read as accuracies reverse A and B
  text = quality.orderings(curves, "d", False, "s", [["A"], ["B"]])
  assert "| A ahead of B | reversed at 3 | 2 |" in text


def test_orderings_name_rows_the_tables_have():
  """Every row a published order names is a row of its benchmark."""
  quality = load_quality()
  for kind, by_dataset in quality.ORDERS.items():
    for sources in by_dataset.values():
      for _, tiers in sources:
        for row in (v for tier in tiers for v in tier):
          assert row in quality.VARIANTS[kind], (kind, row)
