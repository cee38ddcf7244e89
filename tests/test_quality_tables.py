"""bench/quality.py's tables: published orderings checked against the seed
spread, and the rows that add T5's relative bias."""

import importlib
import json
import math
import os
import shlex
import shutil
import sys

import pytest

BENCH = os.path.join(os.path.dirname(__file__), "..", "bench")
COMMITTED = os.path.join(BENCH, "results", "quality")
# a decoder-only model small enough to build in a second
TINY_LM = ["d_model = 16", "d_ff = 32", "num_heads = 2", "d_kv = 8",
           "num_layers = 2", "max_length = 8",
           "SynthesizerAttention.max_length = 8",
           "utils.run.model_type = 'lm'"]


def bench_module(name):
  """One of bench/'s modules, imported as quality.py imports them."""
  if BENCH not in sys.path:  # as when run as a script: bench/ on the path
    sys.path.insert(0, BENCH)
  return importlib.import_module(name)


def write_wikitext(data):
  """The LM's two files under `data`, enough for runs_lib.run to start."""
  wiki = data / "wikitext2"
  wiki.mkdir()
  for name in ("wiki.test.tokens", "wiki.valid.tokens"):
    (wiki / name).write_text("text\n")


# perplexity (lower is better), two seeds of A, B and E, one of C
CURVES = {
    ("d", "A"): {1: {1: 5.0, 2: 3.9, 3: 3.0}, 2: {1: 5.5, 2: 4.0, 3: 3.1}},
    ("d", "B"): {1: {1: 4.0, 2: 4.1, 3: 3.5}, 2: {1: 4.1, 2: 4.3, 3: 3.6}},
    ("d", "C"): {1: {1: 9.0, 2: 8.0, 3: 7.0}},
    ("d", "E"): {1: {1: 6.0, 2: 3.0, 3: 3.05}, 2: {1: 6.0, 2: 5.0, 3: 3.2}},
}


def test_orderings_claim_only_outside_the_seed_spread():
  rows_lib = bench_module("quality_rows")
  report = bench_module("quality_report")
  pairs = rows_lib.tier_pairs([["A"], ["B", "E"], ["C"]])
  assert pairs == [("A", "B"), ("A", "E"), ("A", "C"), ("B", "C"), ("E", "C")]
  text = report.orderings(CURVES, "d", True, "a source", pairs)
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
  text = report.orderings(CURVES, "d", False, "s", [("A", "B")])
  assert "| A ahead of B | reversed at 3 | 2 |" in text


def test_each_finetuned_row_is_checked_against_itself_from_scratch():
  """Pretraining's premise is one pair per variant (X/pretrained ahead of
  X/scratch), not every pretrained row against every scratch row."""
  rows_lib = bench_module("quality_rows")
  report = bench_module("quality_report")
  orders = dict(rows_lib.ORDERS["finetune"]["sst2"])
  superglue = orders[rows_lib.NARANG_SUPERGLUE[0]]
  helps = orders[rows_lib.PRETRAINING_HELPS[0]]
  assert sorted(helps) == sorted((v + "/pretrained", v + "/scratch") for v in
                                 ["vanilla", "R", "FR", "D", "R+V", "D+V"])
  # Narang et al.'s SuperGLUE order compares the /pretrained rows only
  assert ("R+V/pretrained", "R/pretrained") in superglue
  assert all(a.endswith("/pretrained") and b.endswith("/pretrained")
             for a, b in superglue)
  # in the tables: R's seeds pretrained all ahead of R's from scratch
  curves = {("sst2", "R/pretrained"): {1: {250: 80.0}, 2: {250: 79.0}},
            ("sst2", "R/scratch"): {1: {250: 78.0}, 2: {250: 78.5}},
            ("sst2", "D/pretrained"): {1: {250: 70.0}, 2: {250: 79.0}}}
  text = report.orderings(curves, "sst2", False, "s", helps)
  rows = [line for line in text.splitlines() if " ahead of " in line]
  assert rows == ["| R/pretrained ahead of R/scratch | holds at 250 | 250 |"]


def test_the_papers_pretrain_finetune_tables_are_checked_as_published():
  """The pairs the tables check for the paper's Tables 4-6, against every
  pair the published scores order (ties give no pair); SST-2 alone gets
  Table 5's SST column, and both finetuning datasets its overall order."""
  rows_lib = bench_module("quality_rows")

  def pairs(scores, lower):  # every (a, b) with a strictly better
    return sorted((a, b) for a in scores for b in scores
                  if (scores[a] < scores[b]) == lower
                  and scores[a] != scores[b])

  table4 = {"D+V": 1.832, "R+V": 1.849, "vanilla": 1.865, "D": 1.965,
            "R": 1.972}
  glue = {"R+V": 84.1, "vanilla": 83.5, "D+V": 82.6, "R": 75.1, "D": 72.0}
  superglue = {"R+V": 72.2, "vanilla": 70.3, "D+V": 69.7, "R": 61.1,
               "D": 58.5}
  sst = {"D+V": 92.4, "vanilla": 92.2, "R+V": 92.2, "R": 91.2, "D": 89.9}
  (_, t4), _ = rows_lib.ORDERS["pretrain"]["span_corruption"]
  assert sorted(t4) == pairs(table4, lower=True)
  assert pairs(glue, False) == pairs(superglue, False)
  suffixed = lambda ps: sorted((a + "/pretrained", b + "/pretrained")
                               for a, b in ps)
  for ds in ("sst2", "ag_news"):
    orders = dict(rows_lib.ORDERS["finetune"][ds])
    assert sorted(orders[rows_lib.PAPER_T5_T6[0]]) == suffixed(
        pairs(glue, False))
  sst2 = dict(rows_lib.ORDERS["finetune"]["sst2"])
  assert sorted(sst2[rows_lib.PAPER_T5_SST[0]]) == suffixed(pairs(sst, False))
  assert rows_lib.PAPER_T5_SST[0] not in dict(
      rows_lib.ORDERS["finetune"]["ag_news"])


def test_ranking_settles_by_means_and_by_the_spread():
  """The order of means settles at step 2 (A > E > B > C); the pairs the
  spread separates change until step 3 (A ahead of B from step 2, E ahead of
  B only at 3; C has one seed and no spread)."""
  report = bench_module("quality_report")
  text = report.ranking_by_step(CURVES, "d", True)
  assert "unchanged from step 2 on" in text
  assert "2 of 3 at the last step, the same pairs the same way round from " \
         "step 3 on" in text
  assert "| 3 | A 3.05 > E 3.12 > B 3.55 > C 7.00 |" in text
  # B ahead of A at step 1, behind at 2; B ahead of E at 1, within the spread
  # at 2, behind at 3; A ahead of E at 1, then within: no crossing
  assert "changed sides outside the spread (one ahead of the other at an " \
         "evaluation, behind it at a later one): 2, latest first: B and E " \
         "at 3; A and B at 2." in text
  # half way through training on (A's seed 1 at step 4, the others not
  # yet): the ranking stays at the steps every seed of every row has
  longer = {**CURVES, ("d", "A"): {1: {**CURVES[("d", "A")][1], 4: 1.0},
                                    2: CURVES[("d", "A")][2]}}
  assert report.ranking_by_step(longer, "d", True) == text


def test_changed_sides_lists_the_latest_crossings_first_and_says_none():
  report = bench_module("quality_report")
  steps = [1, 2, 3, 4]
  separated = [{("a", "b", "holds"), ("c", "d", "reversed")},
               {("a", "b", "reversed")},
               {("a", "b", "holds"), ("c", "d", "holds")},
               {("c", "d", "holds")}]
  assert report.changed_sides(steps, separated, shown=1) == (
      "Pairs that changed sides outside the spread (one ahead of the other at "
      "an evaluation, behind it at a later one): 2, latest first: a and b at "
      "3; 1 more.")
  assert report.changed_sides(steps, [set(), {("a", "b", "holds")}, set(),
                                       {("a", "b", "holds")}]) == (
      "No pair changed sides outside the spread.")


def test_orderings_name_rows_the_tables_have():
  """Every row a published order names is a row of its benchmark."""
  rows_lib = bench_module("quality_rows")
  for kind, by_dataset in rows_lib.ORDERS.items():
    for sources in by_dataset.values():
      for _, pairs in sources:
        for row in (v for pair in pairs for v in pair):
          assert row in rows_lib.VARIANTS[kind], (kind, row)


def test_bias_rows_add_t5s_relative_bias():
  """The LM's /bias rows give Dense T5's relative position bias, which the
  plain rows do not have (T5's stacks have no absolute positions)."""
  from synth_mtf import model_graph  # pylint: disable=g-import-not-at-top
  rows_lib = bench_module("quality_rows")
  for row, has_bias in [("vanilla", True), ("D", False), ("D/bias", True),
                        ("D+V", False), ("D+V/bias", True)]:
    gin_file, bindings = rows_lib.LM_VARIANTS[row]
    names = model_graph.build_variables(
        ["models/t5.1.1.tiny.gin", gin_file], bindings + TINY_LM)
    assert any("relative_attention_bias" in n for n in names) == has_bias, (
        row, sorted(names))


def test_stock_rows_take_the_releases_init_and_table():
  """R/stock_init starts R at the release's RMS in our table (max_length
  wide); R/stock_table also gives it the release's 512 x 512 table, of which
  the run's rows use the first max_length x max_length."""
  import gin  # pylint: disable=g-import-not-at-top
  from synth_mtf import model_graph  # pylint: disable=g-import-not-at-top
  rows_lib = bench_module("quality_rows")
  for row, stddev, size in [("R", None, 8), ("R/stock_init", 0.00275, 8),
                            ("R/stock_table", 0.00275, 512)]:
    gin_file, bindings = rows_lib.LM_VARIANTS[row]
    names = model_graph.build_variables(  # the row's bindings come last
        ["models/t5.1.1.tiny.gin", gin_file], TINY_LM + bindings)
    shapes = [shape for n, (shape, _) in names.items() if n.endswith("/R")]
    assert shapes and all(sorted(s)[-2:] == [size, size] for s in shapes), (
        row, names)
    try:
      bound = gin.query_parameter("Random.stddev")
    except ValueError:  # not bound: Random's default N(0, 1)
      bound = None
    assert bound == stddev, row


def test_shared_w2_row_gives_dense_one_w2_for_every_head():
  """D/shared_w2: Dense's W2 as the release has it, [d_kv, max_length], not
  one per head."""
  from synth_mtf import model_graph  # pylint: disable=g-import-not-at-top
  rows_lib = bench_module("quality_rows")
  for row, shape in [("D", [16, 8]), ("D/shared_w2", [8, 8])]:
    gin_file, bindings = rows_lib.LM_VARIANTS[row]
    names = model_graph.build_variables(
        ["models/t5.1.1.tiny.gin", gin_file], TINY_LM + bindings)
    shapes = [s for n, (s, _) in names.items() if n.endswith("dense/W2")]
    assert shapes and all(list(s) == shape for s in shapes), (row, names)


def test_plan_gives_the_main_rows_three_seeds_in_every_table():
  """Issue 12's seeds: 3 for vanilla, R, FR, D, R+V and D+V (finetuned too,
  from the one seed-1 pretraining), 2 for the rest; seed by seed, every
  row's first two before any third seed and the stock rows."""
  runs_lib = bench_module("quality_runs")
  cls = runs_lib.plan("cls", "data", ["R", "FR+V", "stock_R"], None,
                     ["sst2"])
  assert cls == [("sst2", "R", 1), ("sst2", "FR+V", 1), ("sst2", "R", 2),
                 ("sst2", "FR+V", 2), ("sst2", "R", 3), ("sst2", "stock_R", 1),
                 ("sst2", "stock_R", 2)]
  lm = runs_lib.plan("lm", "data", ["R/unpacked", "D+V/bias"], None, None)
  assert [s for _, _, s in lm] == [1, 1, 2, 2]
  fine = runs_lib.plan("finetune", "data", ["D+V/pretrained", "D+V/scratch"],
                      None, ["ag_news"])
  assert [(v, s) for _, v, s in fine] == [
      ("D+V/pretrained", 1), ("D+V/scratch", 1), ("D+V/pretrained", 2),
      ("D+V/scratch", 2), ("D+V/pretrained", 3), ("D+V/scratch", 3)], fine
  assert runs_lib.plan("pretrain", "data", ["D+V"], None, None) == [
      ("span_corruption", "D+V", s) for s in (1, 2, 3)]
  assert runs_lib.plan("pretrain", "data", ["D+V"], [1], None) == [
      ("span_corruption", "D+V", 1)]
  assert [s for _, _, s in runs_lib.plan("cls", "data", ["R"], [4, 5],
                                        ["sst2"])] == [4, 5]


def test_tables_keep_committed_runs_that_the_plan_reaches_later(
    tmp_path, monkeypatch):
  """A run trained before committed ones in the plan's order (they ran in an
  earlier invocation for a subset): the tables written after it still hold
  them, so a benchmark stopped there loses none."""
  from synth_mtf import sweep as sweep_lib  # pylint: disable=g-import-not-at-top
  runs_lib = bench_module("quality_runs")
  write_wikitext(tmp_path)

  def result(variant, seed=1):
    return {"run": "%s_%d" % (variant, seed), "variant": variant,
            "dataset": "wikitext2", "seed": seed, "metric": "m",
            "curve": [[2, -1.0], [4, -0.9]]}

  monkeypatch.setattr(sweep_lib, "run_one",
                      lambda sweep, run_id, variant, *a, **k: result(variant))
  written = []
  runs_lib.run("lm", str(tmp_path), [("wikitext2", v, 1) for v in (
      "R", "stock_R", "FR", "D/bias")], 4, 2, 0.1, str(tmp_path / "runs"),
              lambda rows: written.append(sorted(r["variant"] for r in rows)),
              committed=[result("stock_R"), result("D/bias")])
  assert written == [["D/bias", "R", "stock_R"],
                     ["D/bias", "FR", "R", "stock_R"]]


def test_runs_trained_further_are_kept_and_other_schedules_stop(
    tmp_path, monkeypatch, capsys):
  """One dataset trained on further (--datasets with a larger --steps) does
  not stop an invocation with fewer steps: its runs stay in the tables as
  committed, none is retrained or cut; runs evaluated on another schedule
  stop the benchmark with the fix."""
  from synth_mtf import sweep as sweep_lib  # pylint: disable=g-import-not-at-top
  report = bench_module("quality_report")
  runs_lib = bench_module("quality_runs")
  write_wikitext(tmp_path)
  trained = []

  def result(variant, steps):
    return {"run": variant + "_1", "variant": variant, "dataset": "wikitext2",
            "seed": 1, "metric": "m", "curve": [[s, -1.0] for s in steps]}

  monkeypatch.setattr(
      sweep_lib, "run_one", lambda sweep, run_id, variant, *a, **k:
      trained.append(variant) or result(variant, [2, 4]))
  written = []
  longer = [result("R", [2, 4, 6, 8]), result("FR", [2, 4, 6, 8])]
  runs_lib.run("lm", str(tmp_path), [("wikitext2", v, 1) for v in (
      "vanilla", "R")], 4, 2, 0.1, str(tmp_path / "runs"), written.append,
              committed=longer)
  assert trained == ["vanilla"]
  assert sorted((r["variant"], len(r["curve"])) for r in written[-1]) == [
      ("FR", 4), ("R", 4), ("vanilla", 2)]
  # the header counts the plan's runs apart from the others in the tables
  report.summarize("lm", written[-1], str(tmp_path), dict.fromkeys(
      ["command", "commit", "date", "machine"], "x"),
                    [("wikitext2", v, 1) for v in ("vanilla", "R")], 4, 0.1)
  md = (tmp_path / "quality_lm.md").read_text()
  assert ("2 of 2 runs trained to step 4 or further (and 1 committed before, "
          "outside this invocation's plan)") in md, md[:600]
  try:
    runs_lib.run("lm", str(tmp_path), [("wikitext2", "R", 1)], 4, 2, 0.1,
                str(tmp_path / "runs"), written.append,
                committed=[result("FR", [3, 6])])
    raise AssertionError("not stopped")
  except SystemExit as e:
    assert "other steps than every 2" in str(e), e
    assert "pass another --out" in str(e), e
  # a shorter committed run whose model dir is not here: the log says it is
  # trained anew, not extended, in one leg; with in_legs (the pretraining
  # table) in the same two as one extended (to its committed step, then
  # on), each evaluated at its own steps
  legs = []
  monkeypatch.setattr(
      sweep_lib, "run_one", lambda sweep, run_id, variant, *a, **k:
      legs.append(([b for b in sweep.bindings if "train_steps" in b],
                   sweep.eval_steps)) or result(variant, [2, 4]))
  for in_legs, said, trained in (
      (False, "", [(["utils.run.train_steps = 4"], [2, 4])]),
      (True, " in the same two legs: to 2, then on",
       [(["utils.run.train_steps = 2"], [2]),
        (["utils.run.train_steps = 4"], [2, 4])])):
    capsys.readouterr()
    legs.clear()
    runs_lib.run("lm", str(tmp_path), [("wikitext2", "R", 1)], 4, 2, 0.1,
                str(tmp_path / "elsewhere"), written.append,
                committed=[result("R", [2])], in_legs=in_legs)
    assert ("R seed 1: committed to step 2, trained anew (its model dir is "
            "not on this machine)%s to 4" % said) in capsys.readouterr().out
    assert legs == trained, legs


def test_a_row_half_trained_on_is_compared_where_all_its_seeds_are(tmp_path):
  """While one dataset is trained on further, a row's seeds reach different
  steps: its mean and best are taken up to the last step all seeds have (not
  one seed at 8 beside another at 4), and the header does not count the
  shorter runs as finished."""
  report = bench_module("quality_report")

  def result(seed, curve):
    return {"run": "R_%d" % seed, "variant": "R", "dataset": "wikitext2",
            "seed": seed, "metric": "m", "curve": curve}

  # neg log perplexity: perplexity e^2 and e^1 at step 4, seed 1 e^0.5 at 8
  runs = [result(1, [[4, -2.0], [8, -0.5]]), result(2, [[4, -1.0]]),
          dict(result(1, [[s, 0.0] for s in range(2, 12, 2)]), variant="FR")]
  report.summarize("lm", runs, str(tmp_path), dict.fromkeys(
      ["command", "commit", "date", "machine"], "x"),
                    [("wikitext2", v, s) for v, s in (("R", 1), ("R", 2),
                                                      ("FR", 1))], 8, 0.1)
  md = (tmp_path / "quality_lm.md").read_text()
  assert "2 of 3 runs trained to step 8 or further." in md, md[:600]
  assert "| FR | 1 | 10 | 1.00 (1.00-1.00) |" in md, md
  e1, e2 = math.exp(1), math.exp(2)
  row = "| R | 2 | 4 (1 further) |%s 4, 4 |" % (
      " %.2f (%.2f-%.2f) |" % ((e1 + e2) / 2, e1, e2) * 3)
  assert row in md, md


def test_tables_average_each_runs_last_evaluations(tmp_path):
  """The window column: each seed's mean over its last WINDOW (4)
  evaluations, then mean (min-max) over the seeds."""
  report = bench_module("quality_report")
  # accuracy i% (seed 1) and 2i% (seed 2) at step 250 i, i = 1..8
  runs = [{"run": "A_%d" % seed, "variant": "A", "dataset": "sst2",
           "seed": seed, "metric": "accuracy",
           "curve": [[250 * i, seed * i / 100.0] for i in range(1, 9)]}
          for seed in (1, 2)]
  report.summarize("cls", runs, str(tmp_path), dict.fromkeys(
      ["command", "commit", "date", "machine"], "x"),
                    [("sst2", "A", 1), ("sst2", "A", 2)], 2000, 0.1)
  md = (tmp_path / "quality_cls.md").read_text()
  # last: 8 and 16; last 4: means of 5..8 (6.5) and 10..16 (13); best = last
  assert ("| A | 2 | 2000 | 12.00 (8.00-16.00) | 9.75 (6.50-13.00) | "
          "12.00 (8.00-16.00) | 2000, 2000 |") in md, md


def test_perplexity_is_named_per_byte_or_per_word_piece(tmp_path):
  """The LM reads bytes, span corruption word pieces: its table once said
  'per byte'."""
  report = bench_module("quality_report")
  stamp = dict.fromkeys(["command", "commit", "date", "machine"], "x")
  for kind, dataset, unit in [("lm", "wikitext2", "per byte"),
                              ("pretrain", "span_corruption",
                               "per target word piece")]:
    runs = [{"run": "A_1", "variant": "A", "dataset": dataset, "seed": 1,
             "metric": "m", "curve": [[250, -1.0]]}]
    report.summarize(kind, runs, str(tmp_path), stamp, [(dataset, "A", 1)],
                      250, 0.1)
    md = (tmp_path / ("quality_%s.md" % kind)).read_text()
    assert "validation perplexity %s" % unit in md, (kind, md[:400])


def test_runs_of_another_vocabulary_are_not_taken_or_resumed(
    tmp_path, monkeypatch):
  """A committed run trained in other word pieces (or in bytes) stops the
  benchmark with the fix; model dirs of different pieces are apart, so no
  checkpoint of another vocabulary is resumed."""
  from synth_mtf import sweep as sweep_lib  # pylint: disable=g-import-not-at-top
  runs_lib = bench_module("quality_runs")
  write_wikitext(tmp_path)
  dirs = []

  def run_one(sweep, run_id, variant, f, crossed, d, **k):
    dirs.append(d)
    return {"run": run_id, "variant": variant, "metric": "m",
            "curve": [[2, -1.0]]}

  monkeypatch.setattr(sweep_lib, "run_one", run_one)
  old = {"run": "R_1", "variant": "R", "dataset": "span_corruption",
         "seed": 1, "metric": "m", "curve": [[2, -1.0]], "vocabulary": "a" * 64}
  for pieces, committed in [(("p.model", "b" * 64), [old]),
                            (None, [old]),
                            (("p.model", "b" * 64), [dict(old, vocabulary=None)])]:
    try:
      runs_lib.run("pretrain", str(tmp_path), [("span_corruption", "R", 1)], 2,
                  2, 0.1, str(tmp_path / "runs"), lambda rows: None,
                  committed=committed, pieces=pieces)
      raise AssertionError("not stopped: %s" % (pieces,))
    except SystemExit as e:
      assert "runs of another vocabulary" in str(e), e
      assert "pass another --out" in str(e), e
  written = []
  for sha in ("a" * 64, "b" * 64):
    runs_lib.run("pretrain", str(tmp_path), [("span_corruption", "R", 1)], 2,
                2, 0.1, str(tmp_path / "runs"), written.extend,
                pieces=("p.model", sha))
  assert [r["vocabulary"] for r in written] == ["a" * 64, "b" * 64]
  assert dirs == [str(tmp_path / "runs" / ("span_corruption_pieces_" + c * 12))
                  for c in "ab"]


def pretrain_data(data, monkeypatch):
  """The files `pretrain` reads under `data` (one row each), its word
  pieces stubbed. -> the quality module."""
  quality = bench_module("quality")
  write_wikitext(data)
  (data / "sst2").mkdir()
  for name in ("train.tsv", "dev.tsv"):
    (data / "sst2" / name).write_text("sentence\tlabel\nok\t1\n")
  (data / "ag_news").mkdir()
  (data / "ag_news" / "test.csv").write_text('"1","a","b"\n')
  monkeypatch.setattr(bench_module("quality_data"), "train_pieces",
                      lambda data, work_dir: ("p.model", "c" * 64))
  return quality


def test_each_variant_is_pretrained_then_finetuned_and_its_start_recorded(
    tmp_path, monkeypatch):
  """`pretrain` finetunes each variant right after its pretraining, keeps
  the checkpoint with the tables (model dirs do not outlive a machine), so
  that a finetuning carried over to another machine starts from the same
  one, pretrains again only when that is gone too, and records in each
  /pretrained run the perplexity of the checkpoint it began from, so that
  the tables show a second pretraining."""
  from synth_mtf import sweep as sweep_lib  # pylint: disable=g-import-not-at-top
  quality = pretrain_data(tmp_path, monkeypatch)
  calls = []
  # the first pretraining of each variant reaches perplexity e^2, the next e^3
  pretrainings = {}

  starts = []  # the init_checkpoint of each /pretrained run

  def run_one(sweep, run_id, variant, f, crossed, d, **k):
    calls.append((os.path.basename(os.path.dirname(d)), variant))
    starts.extend(b.split(" = ")[1].strip("'") for b in sweep.bindings
                  if b.startswith("utils.run.init_checkpoint"))
    run_dir = os.path.join(d, run_id)
    os.makedirs(run_dir)
    for name in ("model.ckpt-2.index", "model.ckpt-2.data-00000-of-00001",
                 "model.ckpt-2.meta", "model.ckpt-1.index"):
      open(os.path.join(run_dir, name), "w").close()
    if "/" not in variant:  # run_id names the seed
      pretrainings[run_id] = pretrainings.get(run_id, 1) + 1
    value = -float(pretrainings.get(run_id, 1))
    # finetuning from step 2 of the pretraining to 2 more
    step = 4 if variant.endswith("/pretrained") else 2
    result = {"run": run_id, "variant": variant, "metric": "m",
              "curve": [[step, value]], "value": value}
    with open(os.path.join(run_dir, "result.json"), "w") as out:
      json.dump(result, out)
    return result

  monkeypatch.setattr(sweep_lib, "run_one", run_one)
  args = ["pretrain", "--data", str(tmp_path), "--pretrain_steps", "2",
          "--pretrain_table_steps", "2",  # (trained on: the next test)
          "--steps", "2", "--eval_every", "2", "--variants", "vanilla,R",
          "--seeds", "1", "--datasets", "sst2", "--out", str(tmp_path / "out")]
  quality.main(args + ["--work_dir", str(tmp_path / "machine1")])
  # pretraining seeds 2 and 3 (the pretraining table's spread) come after
  # every finetuning, which starts from seed 1's checkpoint
  assert calls == [("pretrain", "vanilla"), ("finetune", "vanilla/pretrained"),
                   ("finetune", "vanilla/scratch"), ("pretrain", "R"),
                   ("finetune", "R/pretrained"), ("finetune", "R/scratch"),
                   ("pretrain", "vanilla"), ("pretrain", "R"),
                   ("pretrain", "vanilla"), ("pretrain", "R")]
  pre = json.loads((tmp_path / "out" / "quality_pretrain.json").read_text())
  assert sorted((r["variant"], r["seed"]) for r in pre["runs"]) == [
      (v, s) for v in ("R", "vanilla") for s in (1, 2, 3)]
  assert "6 of 6 runs" in (tmp_path / "out" / "quality_pretrain.md").read_text()
  fine = json.loads((tmp_path / "out" / "quality_finetune.json").read_text())
  assert {r["variant"]: r.get("pretrained_perplexity")
          for r in fine["runs"]} == {
              "vanilla/pretrained": round(math.exp(2), 4), "R/pretrained":
              round(math.exp(2), 4), "vanilla/scratch": None,
              "R/scratch": None}
  md = (tmp_path / "out" / "quality_finetune.md").read_text()
  assert "- R: %.4f (1)" % math.exp(2) in md
  assert "2 of 4 runs" not in md and "4 of 4 runs" in md
  # what init_checkpoint reads is kept with the tables, not the graph
  kept = tmp_path / "out" / "checkpoints" / ("span_corruption_pieces_" +
                                             "c" * 12)
  (r_kept,) = kept.glob("R_*")
  assert sorted(os.listdir(r_kept)) == [
      "model.ckpt-2.data-00000-of-00001", "model.ckpt-2.index", "result.json"]
  assert starts[-1] == str(r_kept / "model.ckpt-2")
  # on another machine, a second finetuning seed starts from the kept
  # checkpoint: R is not pretrained again
  del calls[:]
  quality.main([a if a != "1" else "2" for a in args]
               + ["--variants", "R", "--work_dir", str(tmp_path / "machine2")])
  assert calls == [("finetune", "R/pretrained"), ("finetune", "R/scratch")]
  assert starts[-1] == str(r_kept / "model.ckpt-2")
  md = (tmp_path / "out" / "quality_finetune.md").read_text()
  assert "- R: %.4f (2)" % math.exp(2) in md
  # a third seed on a third machine, the kept checkpoint gone (as before
  # checkpoints were kept): R's checkpoint is pretrained again for it, and
  # the tables show both starts
  shutil.rmtree(kept)
  del calls[:]
  quality.main([a if a != "1" else "3" for a in args]
               + ["--variants", "R", "--work_dir", str(tmp_path / "machine3")])
  assert calls == [("pretrain", "R"), ("finetune", "R/pretrained"),
                   ("finetune", "R/scratch")]
  md = (tmp_path / "out" / "quality_finetune.md").read_text()
  assert "- R: %.4f (2), %.4f (1)" % (math.exp(2), math.exp(3)) in md


def test_the_pretraining_table_trains_every_seed_on_from_where_it_was(
    tmp_path, monkeypatch):
  """--pretrain_table_steps trains every pretraining seed on, last of all:
  on a machine without seed 1's model dir, from the checkpoint kept with the
  tables (its curve so far taken, not trained again), and where that is
  gone too, pretrained to --pretrain_steps again first. The finetuning
  keeps its start at --pretrain_steps."""
  from synth_mtf import sweep as sweep_lib  # pylint: disable=g-import-not-at-top
  quality = pretrain_data(tmp_path, monkeypatch)
  calls = []

  def run_one(sweep, run_id, variant, f, crossed, d, **k):
    """Trains from the model dir's latest checkpoint (as T5 does) to the
    last eval step; a pretraining's perplexity at step s is e^(s + seed)."""
    run_dir = os.path.join(d, run_id)
    start = sweep_lib._latest_step(run_dir) if os.path.isdir(run_dir) else 0
    before = (json.load(open(os.path.join(run_dir, "result.json")))
              if start else {"curve": []})
    calls.append((variant, crossed, start, before["curve"]))
    os.makedirs(run_dir, exist_ok=True)
    seed = int(crossed[0].split(" = ")[1])
    curve = before["curve"] + [[s, -float(s + seed)] for s in
                               sweep.eval_steps if s > start]
    for s in sweep.eval_steps:
      for ext in ("index", "data-00000-of-00001"):
        open(os.path.join(run_dir, "model.ckpt-%d.%s" % (s, ext)), "w").close()
    with open(os.path.join(run_dir, "checkpoint"), "w") as out:
      out.write('model_checkpoint_path: "model.ckpt-%d"\n'
                % sweep.eval_steps[-1])
    result = {"run": run_id, "variant": variant, "metric": "m",
              "curve": curve, "value": curve[-1][1]}
    with open(os.path.join(run_dir, "result.json"), "w") as out:
      json.dump(result, out)
    return result

  monkeypatch.setattr(sweep_lib, "run_one", run_one)
  args = ["pretrain", "--data", str(tmp_path), "--pretrain_steps", "2",
          "--steps", "2", "--eval_every", "2", "--variants", "R",
          "--seeds", "1", "--datasets", "sst2", "--out", str(tmp_path / "out")]
  quality.main(args + ["--pretrain_table_steps", "2",
                       "--pretrain_seeds", "1", "--work_dir",
                       str(tmp_path / "machine1")])
  del calls[:]
  quality.main(args + ["--pretrain_table_steps", "6", "--work_dir",
                       str(tmp_path / "machine2")])
  seed = ["seeded_train_dataset_fn.seed = %d" % s for s in (1, 2, 3)]
  # the finetuning was done (committed): seeds 2 and 3 to step 2, then all
  # three on to 6; seed 1 from its kept checkpoint at step 2
  assert calls == [("R", seed[1:2], 0, []), ("R", seed[2:3], 0, []),
                   ("R", seed[:1], 2, [[2, -3.0]]),
                   ("R", seed[1:2], 2, [[2, -4.0]]),
                   ("R", seed[2:3], 2, [[2, -5.0]])]
  pre = json.loads((tmp_path / "out" / "quality_pretrain.json").read_text())
  assert sorted((r["seed"], r["curve"]) for r in pre["runs"]) == [
      (s, [[2, -2.0 - s], [4, -4.0 - s], [6, -6.0 - s]]) for s in (1, 2, 3)]
  assert "3 of 3 runs trained to step 6" in (
      tmp_path / "out" / "quality_pretrain.md").read_text()
  # finetuning still starts from step 2: the kept checkpoint is untouched
  (kept,) = (tmp_path / "out" / "checkpoints").glob("*/R_*")
  step_2 = ["model.ckpt-2.data-00000-of-00001", "model.ckpt-2.index",
            "result.json"]
  assert sorted(os.listdir(kept)) == step_2

  def seed_1_to_step_8_without_kept_checkpoint(machine):
    shutil.rmtree(kept)
    del calls[:]
    quality.main(args + ["--pretrain_table_steps", "8", "--pretrain_seeds",
                         "1", "--work_dir", str(tmp_path / machine)])

  # a machine with neither: seed 1 pretrained to step 2 again, then on
  seed_1_to_step_8_without_kept_checkpoint("machine3")
  assert calls == [("R", seed[:1], 0, []), ("R", seed[:1], 2, [[2, -3.0]])]
  assert sorted(os.listdir(kept)) == step_2
  # once committed at that step, nothing is pretrained or restored again
  seed_1_to_step_8_without_kept_checkpoint("machine4")
  assert not calls and not os.path.exists(kept)


def test_every_row_is_drawn_in_one_panel():
  """The plot splits rows into panels: none is left out or drawn twice, and
  each row's colour is that of the variant of ours it changes."""
  rows_lib = bench_module("quality_rows")
  report = bench_module("quality_report")
  for kind, rows in rows_lib.VARIANTS.items():
    for row in rows:
      panels = [title for title, member, _ in report.PANELS if member(row)]
      assert len(panels) == 1, (kind, row, panels)
  assert report.base("stock_R+V/unpacked") == "R+V"
  assert report.base("D/bias") == "D"
  assert report.base("vanilla/pretrained") == "vanilla"


def test_a_panel_title_names_only_the_line_styles_it_draws():
  """SST-2's panel of mesh-tensorflow's rows (none unpacked) once read
  "dashed: unpacked" over no dashed line, and did not say what the dotted
  lines were."""
  report = bench_module("quality_report")
  (title, _, dashed), = [p for p in report.PANELS if p[1]("stock_R")]
  assert report.panel_title(title, dashed, ["stock_R", "stock_D"],
                             ["vanilla", "R"]) == (
                                 "mesh-tensorflow's Synthesizer "
                                 "(dotted: vanilla, R)")
  assert report.panel_title(title, dashed, ["stock_R", "stock_R/unpacked"],
                             []) == (
                                 "mesh-tensorflow's Synthesizer "
                                 "(dashed: unpacked)")
  (title, _, dashed), = [p for p in report.PANELS if p[1]("R")]
  assert report.panel_title(title, dashed, ["R"], []) == "the paper's rows"


def test_a_results_file_is_written_whole_or_not_at_all(tmp_path):
  """The sweep rewrites its JSON after every run; one stopped (or failing)
  while writing must leave the last complete file, not a truncated one."""
  bench_module("quality")  # bench/ on the path
  benchlib = importlib.import_module("benchlib")
  path = str(tmp_path / "quality_lm.json")
  benchlib.write_json(path, {"runs": [1, 2]})
  with pytest.raises(TypeError):  # json.dump fails half way through
    benchlib.write_json(path, {"runs": [1, 2, object()]})
  assert benchlib.read_json(path) == {"runs": [1, 2]}
  assert os.listdir(tmp_path) == ["quality_lm.json"]


def test_a_second_sweep_of_one_kind_is_refused_another_kind_runs_beside(
    tmp_path):
  """Each invocation rewrites its kind's tables from the runs it has: a
  second lm beside a running lm would drop the first one's runs, so it
  stops with the fix; pretrain beside lm (other tables) is let through."""
  runs_lib = bench_module("quality_runs")
  quality = bench_module("quality")
  out = str(tmp_path)
  held = runs_lib.hold_tables(out, "lm")
  with pytest.raises(SystemExit, match=r"another `quality.py lm` is writing "
                     r"its tables in .*pass another --out"):
    quality.main(["lm", "--out", out, "--work_dir", str(tmp_path / "runs")])
  beside = runs_lib.hold_tables(out, "pretrain")
  beside.close()
  held.close()  # the first one done: the next may start
  runs_lib.hold_tables(out, "lm").close()


def test_merge_takes_the_runs_of_other_outs_and_trains_nothing(
    tmp_path, monkeypatch):
  """One benchmark split across processes (each with its own --out) is
  merged into --out's tables: a run in several is taken from the one
  trained furthest (a tie: --out's), nothing is trained, and the stamp
  names the invocations merged in; an --out without results, or runs of
  other settings, stop it with the fix."""
  from synth_mtf import sweep as sweep_lib  # pylint: disable=g-import-not-at-top
  runs_lib = bench_module("quality_runs")
  quality = bench_module("quality")
  monkeypatch.setattr(sweep_lib, "run_one",
                      lambda *a, **k: pytest.fail("--merge trained a run"))

  def write(out, command, *runs):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "quality_lm.json"), "w") as f:
      json.dump({"stamp": {"command": command}, "runs": [
          dict(run="%s_%d" % (v, seed), variant=v, dataset="wikitext2",
               seed=seed, metric="neg_log_perplexity", value=x,
               curve=[[s, x] for s in steps], **extra)
          for v, seed, steps, x, extra in runs]}, f)

  main, side = str(tmp_path / "main"), str(tmp_path / "side")
  write(main, "quality.py lm --variants R,vanilla",
        ("R", 1, [250, 500], -1.5, {}), ("vanilla", 1, [250, 500], -1.4, {}))
  write(side, "quality.py lm --variants FR --out side",
        ("R", 1, [250, 500, 750, 1000], -1.2, {}),
        ("FR", 1, [250, 500], -1.6, {}), ("vanilla", 1, [250, 500], -9.0, {}))
  quality.main(["lm", "--data", str(tmp_path), "--out", main, "--merge", side,
                "--steps", "1000"])
  with open(os.path.join(main, "quality_lm.json")) as f:
    merged = json.load(f)
  by = {r["variant"]: r for r in merged["runs"]}
  assert sorted(by) == ["FR", "R", "vanilla"]
  assert by["R"]["curve"][-1] == [1000, -1.2]  # trained further: the side's
  assert by["vanilla"]["value"] == -1.4  # a tie: --out's
  assert merged["stamp"]["command"].endswith(
      "; merged with the runs of quality.py lm --variants FR --out side")
  md = open(os.path.join(main, "quality_lm.md")).read()
  assert "1 of %d runs trained to step 1000" % len(
      runs_lib.plan("lm", str(tmp_path), None, None, None)) in md
  with open(os.path.join(main, "quality_lm.csv")) as f:
    assert len(f.readlines()) == 1 + 4 + 2 + 2

  with pytest.raises(SystemExit, match=r"--merge .*nothing: no "
                     r"quality_lm.json there; pass the --out of a "
                     r"`quality.py lm` run"):
    quality.main(["lm", "--data", str(tmp_path), "--out", main, "--merge",
                  str(tmp_path / "nothing")])
  write(side, "x", ("D", 1, [300, 600], -1.0, {}))
  with pytest.raises(SystemExit, match=r"other steps than every 250 .*D_1"):
    quality.main(["lm", "--data", str(tmp_path), "--out", main, "--merge",
                  side])
  write(side, "x", ("D", 1, [250], -1.0, {"vocabulary": "abc"}))
  with pytest.raises(SystemExit, match=r"more than one vocabulary"):
    quality.main(["lm", "--data", str(tmp_path), "--out", main, "--merge",
                  side])


@pytest.mark.parametrize("kind", ["lm", "cls", "pretrain", "finetune"])
def test_committed_tables_regenerate_byte_for_byte_from_their_json(
    tmp_path, kind):
  """The committed quality_<kind>.md and .csv are what the report writes from
  the committed quality_<kind>.json under the command its stamp names (the
  plan that command makes): the tables cannot drift from their data, and a
  change to the report code that would change them fails here."""
  quality = bench_module("quality")
  report = bench_module("quality_report")
  name = "quality_%s" % kind
  with open(os.path.join(COMMITTED, name + ".json"), encoding="utf-8") as f:
    results = json.load(f)
  argv = shlex.split(results["stamp"]["command"])[1:]  # after quality.py
  args = quality.parser().parse_args(argv + ["--out", str(tmp_path)])
  bench = quality.Benchmark(args)
  report.summarize(kind, results["runs"], str(tmp_path), results["stamp"],
                   bench.planned(kind), bench.steps(kind), args.dropout)
  for ext in ("md", "csv", "json"):
    with open(os.path.join(COMMITTED, name + "." + ext), "rb") as f:
      assert (tmp_path / (name + "." + ext)).read_bytes() == f.read(), ext
