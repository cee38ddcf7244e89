"""Quality at small scale on real text: learning curves, every variant trained
the same way.

  python bench/quality.py lm  [--data ../shared/data] [--steps 3000]
  python bench/quality.py cls [--data ../shared/data] [--steps 2000]
  python bench/quality.py pretrain [--pretrain_steps 2000] [--steps 2000]
                                   [--pretrain_table_steps 4000]

lm:  WikiText-2 language modelling, decoder-only, byte level: train on the test
     split, validation perplexity per byte (Table 2's rows: vanilla, R, Fix,
     FR, D, FD, R+D, R+V, D+V).
cls: encoding-only classification (Table 7's rows: vanilla, Linformer, R,
     FR, FR+V, D, in the encoder), SST-2 (train / dev) and AG News (first 6,600
     rows train, last 1,000 eval), accuracy.
pretrain: a small Table 5/6 (the paper's and Narang et al.'s protocol): T5's
     span corruption on the WikiText-2 text for vanilla, R, FR, D, R+V
     and D+V (encoder-decoder), then finetuning on SST-2 and AG News from each
     checkpoint, next to the same models trained from scratch; one variant
     after the other. One pretraining (seed 1) for every finetuning seed: its
     checkpoint is kept with the tables (--out's checkpoints/, 2.8 MB), so
     that a finetuning carried over to another machine starts from it too.
     Pretraining seeds 2 and 3 run after all finetuning: they give the
     pretraining table (the paper's Table 4, Narang et al.'s pretraining
     loss) a seed spread; then every pretraining seed is trained on to
     --pretrain_table_steps (seed 1 from its kept checkpoint where its model
     dir is gone), as that table's orders still move at --pretrain_steps.
lm and cls add mesh-tensorflow's own Synthesizer (the authors' release) as stock_*
rows in its modes, at our model's heads and key size.

Every run is evaluated at every --eval_every steps (a learning curve), with
T5's dropout_rate 0.1 for all variants (the training sets are small: the runs
overfit without it). Seeds: 3 for vanilla, R, FR, D, R+V and D+V (their
finetuning too), 2 for the rest (--seeds overrides). Each (variant, seed) is
one run of the stock CLI through the sweep runner, with a seeded input
function (seeded init and data); finished runs are skipped, so an interrupted
benchmark resumes, and the tables are rewritten after every run. A larger
--steps trains committed runs on from their model dirs (with --datasets, one
dataset only: the others stay as they are). Writes, stamped with command,
commit and machine: <kind>.csv (one row per dataset, variant, seed, step),
<kind>.md (final and best step, mean and spread, ranking by step, and each
pair that the paper or Narang et al. order checked against the seed spread:
holds, reversed or within the spread, and since which step) and <kind>.png
(metric vs step, seed spread as a band).
"""

import argparse
import csv
import fcntl
import functools
import hashlib
import math
import os
import shutil
import statistics
import textwrap

import benchlib
from synth_mtf import variants as catalogue

THREE_SEEDS = {"vanilla", "R", "FR", "D", "R+V", "D+V"}
# mesh-tensorflow's Synthesizer in the modes Narang et al. ran
STOCK = ["stock_R", "stock_FR", "stock_D", "stock_R+V", "stock_D+V"]
UNPACKED = "mesh_train_dataset_fn.pack = False"
# Classification and pretraining read word pieces, the LM bytes. Measured on
# SST-2, vanilla at step 2000: bytes 50.9%, the majority class (training
# accuracy 55%: one label token per example teaches it no words); 2000 pieces
# 78.4%, 8000 pieces 77.8% and 1.4x slower (the embedding and softmax).
PIECES = 2000
AG_NEWS_TRAIN_ROWS = 6600  # of the 7,600 rows; the last 1,000 evaluate
WINDOW = 4  # the tables' mean over each run's last evaluations (1000 steps)


def _rows(kind, labels, extra=(), suffix=""):
  """row name -> (model gin file, bindings) for catalogue labels."""
  variants = {v: catalogue.get(v) for v in labels}
  return {v + suffix: (c.gin_file(kind), list(c.bindings) + list(extra))
          for v, c in variants.items()}


# row name -> (model gin file, extra bindings), in table order
LM_VARIANTS = _rows("lm", ["vanilla", "R", "Fix", "FR", "D", "FD", "R+D", "R+V",
                           "D+V"] + STOCK)
# The release indexes its tables by offset in the packed row: its modes again
# without packing, next to ours without packing for reference.
LM_VARIANTS.update(_rows("lm", STOCK + ["vanilla", "R"], [UNPACKED],
                         "/unpacked"))
# T5 gives its stacks no absolute positions (only its attention's relative
# bias), so Dense, Factorized Dense and a mixture's dot product see none: the
# same rows with T5's relative bias added to the mixed logits.
BIAS = "SynthesizerAttention.relative_attention_type = 'bias_shared'"
LM_VARIANTS.update(_rows("lm", ["D", "FD", "D+V"], [BIAS], "/bias"))
# The release initializes its R glorot-uniform over the whole 512 x h x 512
# table (RMS 0.0027: logits all but equal), ours N(0, 1); under Adafactor's
# steps, which scale with the parameter's RMS, the release's R stays nearly
# uniform for the first ~1000 steps. Our R with the release's initial RMS:
STOCK_INIT = "Random.stddev = 0.00275"
LM_VARIANTS.update(_rows("lm", ["R"], [STOCK_INIT], "/stock_init"))
# ... and also the release's 512-wide table, of which 128-byte rows use 1/16:
# Adafactor scales a step by the RMS of the whole table, unused part included.
LM_VARIANTS.update(_rows("lm", ["R"], [
    STOCK_INIT, "SynthesizerAttention.max_length = 512"], "/stock_table"))
# The release's Dense has one W2 for every head, ours (the paper's) one per
# head; at step 3000 its Dense modes lead ours on this LM. Ours with one W2:
LM_VARIANTS.update(_rows("lm", ["D"], ["Dense.share_w2 = True"], "/shared_w2"))
# rows that change one of the table's rows (run after the table's rows)
VARIATIONS = ("/unpacked", "/bias", "/stock_init", "/stock_table",
              "/shared_w2")
# classification is never packed (see datasets())
CLS_VARIANTS = _rows("encoder_only", ["vanilla", "Linformer", "R", "FR", "FR+V",
                                      "D"] + STOCK)
# Pretrain, then finetune (the paper's Tables 5/6 and Narang et al.'s protocol,
# small): encoder-decoder models, every self-attention replaced.
PRETRAIN_VARIANTS = _rows("bi", ["vanilla", "R", "FR", "D", "R+V", "D+V"])
FINETUNE_VARIANTS = {}
for _v, _config in PRETRAIN_VARIANTS.items():
  FINETUNE_VARIANTS[_v + "/pretrained"] = _config
  FINETUNE_VARIANTS[_v + "/scratch"] = _config
VARIANTS = {"lm": LM_VARIANTS, "cls": CLS_VARIANTS,
            "pretrain": PRETRAIN_VARIANTS, "finetune": FINETUNE_VARIANTS}

SEEDED = ["utils.run.train_dataset_fn = "
          "@synth_mtf.reproducible.seeded_train_dataset_fn"]
METRIC = {"lm": "perplexity", "cls": "accuracy", "pretrain": "perplexity",
          "finetune": "accuracy"}
PACKING = {
    "lm": "Training batches are packed as T5 packs them (several documents per "
          "row) for every row but those marked /unpacked; stock_* is "
          "mesh-tensorflow's own Synthesizer, whose tables are indexed by the "
          "offset in the packed row. /bias: with T5's relative position bias "
          "(relative_attention_type = 'bias_shared'; vanilla has it, our "
          "layer does not by default). /stock_init: R initialized at the "
          "release's RMS (0.0027) instead of N(0, 1); /stock_table: "
          "that, in the release's 512 x 512 table (a 128-byte row uses its "
          "first 128 x 128).",
    "cls": "Word pieces (train_pieces(): SentencePiece, %d pieces, trained "
           "on the training text; each run in the JSON names its sha256). "
           "Training batches are not packed (one example per row) for any "
           "row; stock_* is mesh-tensorflow's own Synthesizer." % PIECES,
    "pretrain": "T5's span corruption on the WikiText-2 text in word pieces "
                "(as cls; packed, as T5 pretrains); encoder-decoder models, "
                "every self-attention replaced.",
    "finetune": "Word pieces (as cls). Encoder-decoder models, every "
                "self-attention replaced, "
                "finetuned (not packed) from their span-corruption checkpoint "
                "(/pretrained, steps counted from the start of finetuning) or "
                "trained from scratch (/scratch)."}

# The orders other work reports, best first, ties in one tier: each pair of
# rows in different tiers is checked against the curves here (ORDERS below,
# orderings()); the finetuning rows are /pretrained.
PAPER_T2 = ("the paper, Table 2 (LM1B perplexity)", [
    ["D+V"], ["vanilla"], ["R+V"], ["R"], ["D"], ["FD"], ["R+D"], ["FR"],
    ["Fix"]])
# The paper's Transformers add position embeddings; in T5 only the attention's
# relative bias carries positions, so D, FD and D+V see none unless given it:
# the same order with their /bias rows in their place.
PAPER_T2_POSITIONS = (
    "the paper, Table 2 (LM1B perplexity), D, FD and D+V with T5's relative "
    "bias (/bias)", [[v + "/bias" if v in ("D", "FD", "D+V") else v
                      for v in tier] for tier in PAPER_T2[1]])
# Narang et al. 2021, Table 1 (T5-base, C4 span corruption; checked against
# two copies of the paper): final pretraining loss vanilla 1.838, dense 1.962,
# dense plus alpha 1.828, factorized 1.968, random 2.009, random plus alpha
# 1.828; SuperGLUE vanilla 71.66, dense 61.03, dense plus alpha 74.25,
# factorized 62.78, random 54.27, random plus alpha 75.24.
NARANG = ("Narang et al. 2021, Table 1 (mesh-tensorflow's Synthesizer, C4 "
          "pretraining loss)", [["stock_R+V", "stock_D+V"], ["vanilla"],
                                ["stock_D"], ["stock_FR"], ["stock_R"]])
NARANG_OURS = ("Narang et al. 2021, Table 1 (C4 pretraining loss), applied to "
               "our rows", [
    ["R+V", "D+V"], ["vanilla"], ["D"], ["FR"], ["R"]])
NARANG_SUPERGLUE = ("Narang et al. 2021, Table 1 (SuperGLUE after C4 "
                    "pretraining), for our rows", [
                        ["R+V"], ["D+V"], ["vanilla"], ["FR"], ["D"], ["R"]])
# The paper's own pretrain-then-finetune tables (T5 on C4, then en_mix):
# Table 4, masked LM log perplexity D+V 1.832, R+V 1.849, Transformer 1.865,
# D 1.965, R 1.972; Tables 5 and 6 (small models), GLUE R+V 84.1, T5 83.5,
# D+V 82.6, R 75.1, D 72.0 and SuperGLUE 72.2, 70.3, 69.7, 61.1, 58.5: one
# order; GLUE's SST column D+V 92.4, T5 and R+V 92.2, R 91.2, D 89.9.
PAPER_T4 = ("the paper, Table 4 (C4 masked LM log perplexity)", [
    ["D+V"], ["R+V"], ["vanilla"], ["D"], ["R"]])
PAPER_T5_T6 = ("the paper, Tables 5 and 6 (GLUE and SuperGLUE scores after "
               "C4 pretraining: the same order in both)", [
                   ["R+V"], ["vanilla"], ["D+V"], ["R"], ["D"]])
PAPER_T5_SST = ("the paper, Table 5 (GLUE's SST-2 column)", [
    ["D+V"], ["vanilla", "R+V"], ["R"], ["D"]])
# Pretraining's premise (the paper's Tables 5/6, Narang et al.): each variant
# finetuned from its span-corruption checkpoint ahead of itself from scratch.
PRETRAINING_HELPS = ("the premise of pretraining (each variant finetuned "
                     "from span corruption ahead of itself from scratch)",
                     [(v + "/pretrained", v + "/scratch")
                      for v in PRETRAIN_VARIANTS])


def tier_pairs(tiers):
  """Tiers (best first, ties in one tier) -> every (a, b) with a in an earlier
  tier than b."""
  return [(a, b) for i, tier in enumerate(tiers) for a in tier
          for b in (v for later in tiers[i + 1:] for v in later)]


def ranked(source_tiers, suffix=""):
  """(source, tiers) -> (source, pairs), each row + suffix."""
  source, tiers = source_tiers
  return source, [(a + suffix, b + suffix) for a, b in tier_pairs(tiers)]


# every finetuning dataset's orders; SST-2 adds Table 5's SST column
FINETUNE_ORDERS = [ranked(o, "/pretrained") for o in (
    PAPER_T5_T6, NARANG_SUPERGLUE)] + [PRETRAINING_HELPS]
# kind -> dataset -> [(source, [(a, b): a ahead of b])]
ORDERS = {
    "lm": {"wikitext2": [ranked(o) for o in (PAPER_T2, PAPER_T2_POSITIONS,
                                             NARANG, NARANG_OURS)]},
    "cls": {"ag_news": [ranked(("the paper, Table 7 (AG News accuracy)", [
        ["FR+V"], ["vanilla"], ["FR"], ["Linformer"]]))],
            "sst2": [ranked(("the paper, Table 7 (IMDB reviews accuracy; "
                             "SST-2 stands in)", [["FR+V"], ["FR"],
                                                  ["Linformer"],
                                                  ["vanilla"]]))]},
    "pretrain": {"span_corruption": [ranked(PAPER_T4),
                                     ranked(NARANG_OURS)]},
    "finetune": {"sst2": [ranked(PAPER_T5_SST, "/pretrained")]
                         + FINETUNE_ORDERS,
                 "ag_news": FINETUNE_ORDERS},
}


def train_pieces(data, work_dir):
  """A SentencePiece model in T5's style (unigram, pad 0, EOS 1, UNK 2, byte
  fallback) of PIECES pieces, trained on the benchmark's training text only
  (SST-2 train, AG News's training rows, the WikiText-2 split the models
  train on), deterministically: the same data give the same model.
  -> (path, sha256 of its pieces and scores: the file also holds the paths
  it was trained from)."""
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  from synth_mtf.tasks import local_files  # pylint: disable=g-import-not-at-top
  with open(os.path.join(data, "sst2", "train.tsv"), encoding="utf-8") as f:
    texts = [line.split("\t", 1)[1].strip() for line in f.readlines()[1:]]
  with open(os.path.join(data, "ag_news", "test.csv"), encoding="utf-8",
            newline="") as f:
    texts += [" ".join(" ".join(row[1:]).replace("\\", " ").split())
              for row in list(csv.reader(f))[:AG_NEWS_TRAIN_ROWS]]
  with open(os.path.join(data, "wikitext2", "wiki.test.tokens"),
            encoding="utf-8") as f:
    texts += [line.strip() for line in f if line.strip()]
  out = os.path.join(work_dir, "vocabulary")
  os.makedirs(out, exist_ok=True)
  prefix = os.path.join(out, "training.%d" % os.getpid())
  with open(prefix + ".txt", "w", encoding="utf-8") as f:
    f.writelines(t + "\n" for t in texts)
  local_files.train_sentencepiece(prefix + ".txt", prefix, PIECES)
  sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
  sha = hashlib.sha256("\n".join(
      "%s\t%r" % (sp.id_to_piece(i), sp.get_score(i))
      for i in range(sp.get_piece_size())).encode("utf-8")).hexdigest()
  path = os.path.join(out, "pieces_%s.model" % sha[:12])
  os.replace(prefix + ".model", path)
  os.remove(prefix + ".vocab")
  os.remove(prefix + ".txt")
  return path, sha


def model_dirs(work_dir, dataset, vocabulary):
  """Where a dataset's runs live: apart for each vocabulary (sha256), since a
  checkpoint of another vocabulary must not be resumed or reused."""
  return os.path.join(work_dir, dataset + (
      "_pieces_" + vocabulary[:12] if vocabulary else ""))


def datasets(kind, data, pieces=None):
  """name -> (bindings, eval gin files, eval bindings, CLI metric); `pieces`:
  the SentencePiece model of cls and pretrain (train_pieces())."""
  wiki = os.path.join(data, "wikitext2")
  text = ["local_lm.train_path = %r" % os.path.join(wiki, "wiki.test.tokens"),
          "local_lm.validation_path = %r" % os.path.join(
              wiki, "wiki.valid.tokens")]
  perplexity = (["perplexity_eval.gin"],
                ["utils.run.perplexity_eval_steps = 50"], "neg_log_perplexity")
  vocabulary = (["local_vocabulary.sentencepiece_model = %r" % pieces]
                if pieces else [])
  if kind == "pretrain":  # T5's objective on the same text
    return {"span_corruption": (
        vocabulary + ["MIXTURE_NAME = 'synth_mtf_local_span_corruption'",
                      "utils.run.sequence_length = {'inputs': 128, "
                      "'targets': 32}"] + text,
        *perplexity)}
  if kind == "lm":
    return {"wikitext2": (["utils.run.model_type = 'lm'",
                           "MIXTURE_NAME = 'synth_mtf_local_lm'"] + text,
                          *perplexity)}
  # cls, and finetune (the same datasets)
  ag = os.path.join(data, "ag_news", "test.csv")
  sst = os.path.join(data, "sst2")
  common = vocabulary + [
      "MIXTURE_NAME = 'synth_mtf_local_classification'",
      "utils.run.sequence_length = {'inputs': 128, 'targets': 16}",
      "Bitransformer.decode.max_decode_length = 16",
      UNPACKED]
  return {
      "sst2": (common + [
          "local_classification.train_path = %r" % os.path.join(sst,
                                                                "train.tsv"),
          "local_classification.validation_path = %r" % os.path.join(
              sst, "dev.tsv"),
          "local_classification.header = True",
          "local_classification.labels = {'0': 'negative', '1': 'positive'}"],
               ["eval.gin", "greedy_decode.gin"], [], "accuracy"),
      "ag_news": (common + [
          "local_classification.train_path = %r" % ag,
          "local_classification.validation_path = %r" % ag,
          "local_classification.file_format = 'csv'",
          "local_classification.text_columns = (1, 2)",
          "local_classification.labels = {'1': 'World', '2': 'Sports', "
          "'3': 'Business', '4': 'Sci/Tech'}",
          "local_classification.backslash_is_newline = True",
          "local_classification.train_rows = (0, %d)" % AG_NEWS_TRAIN_ROWS,
          "local_classification.validation_rows = (%d, 7600)"
          % AG_NEWS_TRAIN_ROWS],
                  ["eval.gin", "greedy_decode.gin"], [], "accuracy"),
  }


def plan(kind, data, variants, seeds, only):
  """[(dataset, variant, seed)] in the order they run: every variant's first
  two seeds before any third seed, ours before the stock rows, so that a
  partial benchmark already covers the table."""
  all_variants = VARIANTS[kind]
  unknown = set(variants or ()) - set(all_variants)
  if unknown:
    raise SystemExit("unknown variants %s; choose from %s"
                     % (sorted(unknown), list(all_variants)))
  names = list(variants or all_variants)
  order = list(datasets(kind, data))
  out = []
  for dataset in order:
    if only and dataset not in only:
      continue
    for i, v in enumerate(names):
      # a main row's finetuning ("R/pretrained", "R/scratch") has 3 seeds;
      # every pretrained variant is a main row
      main_row = (v.split("/")[0] if kind == "finetune" else v) in THREE_SEEDS
      chosen = seeds or ([1, 2, 3] if main_row else [1, 2])
      for s in chosen:
        extra = v.startswith("stock_") or v.endswith(VARIATIONS)
        out.append(((order.index(dataset), 2 * extra + (s > 2), s, i),
                    (dataset, v, s)))
  return [r for _, r in sorted(out)]


def evaluated(r):
  """The steps a committed run was evaluated at, counted from the start of
  its own training ([] for a snapshot without a curve)."""
  return [step - r.get("offset", 0) for step, _ in r.get("curve", [])]


def off_schedule(runs, eval_every):
  """The names of `runs` not evaluated every `eval_every` steps (any length
  of that schedule: a dataset may be trained on further than the others)."""
  steps = [(r["run"], evaluated(r)) for r in runs]
  return sorted(run for run, s in steps if not s or s != list(
      range(eval_every, eval_every * len(s) + 1, eval_every)))


def merge(out, others, kinds, eval_every):
  """{kind: (its runs, [(dir, command)], whether another dir added or
  extended a run)} of --out's results with those of `others` (the --out
  dirs of one benchmark split across processes or machines, e.g. by
  --variants); a run in several is taken from the one trained furthest, on a
  tie from the first (--out's). Kinds none of them has are left out."""
  key = lambda r: (r["dataset"], r["variant"], r["seed"])
  empty = [d for d in others if not any(os.path.exists(
      os.path.join(d, "quality_%s.json" % k)) for k in kinds)]
  if empty:
    raise SystemExit("--merge %s: no %s there; pass the --out of a "
                     "`quality.py %s` run" % (empty[0], " or ".join(
                         "quality_%s.json" % k for k in kinds), kinds[0]))
  merged = {}
  for kind in kinds:
    runs, sources, changed = {}, [], False
    for d in [out] + others:
      results = benchlib.read_json(os.path.join(d, "quality_%s.json" % kind),
                                   None)
      if not results:
        continue
      sources.append((d, results["stamp"]["command"]))
      for r in results["runs"]:
        if key(r) not in runs or (evaluated(r)[-1:] >
                                  evaluated(runs[key(r)])[-1:]):
          runs[key(r)] = r
          changed = changed or d != out
    runs = list(runs.values())
    vocabularies = {r.get("vocabulary") for r in runs}
    if len(vocabularies) > 1:
      raise SystemExit("--merge: the %s runs of %s are of more than one "
                       "vocabulary; merge only runs of one benchmark's "
                       "settings" % (kind, [d for d, _ in sources]))
    other = off_schedule(runs, eval_every)
    if other:
      raise SystemExit("--merge: %s runs evaluated at other steps than "
                       "every %d (e.g. %s); merge only runs of one "
                       "benchmark's settings" % (kind, eval_every, other[:3]))
    if runs:
      merged[kind] = (runs, sources, changed)
  return merged


def run(kind, data, runs, steps, eval_every, dropout, work_dir, on_result,
        committed=(), pretrained=None, pieces=None, in_legs=False):
  """Train and evaluate `runs` in order; a run found in `committed` (the
  results JSON of an earlier invocation, with the same eval steps) is taken
  from there, so the benchmark resumes from what was committed even on a
  machine without the earlier model dirs; one committed with fewer steps
  (the same eval steps so far) is trained on from its model dir to `steps`,
  or without it anew: in one leg, or with in_legs in the same two as one
  trained on (to its committed step, then on).
  pretrained: fn(variant, seed) ->
  (checkpoint, its step, its validation perplexity), for the finetune kind's
  /pretrained rows. pieces:
  (path, sha256) of the SentencePiece model (train_pieces()), None for bytes;
  runs of another vocabulary are neither taken nor resumed."""
  from synth_mtf import sweep as sweep_lib  # pylint: disable=g-import-not-at-top
  all_variants = VARIANTS[kind]
  specs = datasets(kind, data, pieces and pieces[0])
  vocabulary = pieces and pieces[1]
  eval_steps = list(range(eval_every, steps + 1, eval_every))
  if not eval_steps or eval_steps[-1] != steps:
    raise SystemExit("--steps %d must be a multiple of --eval_every %d"
                     % (steps, eval_every))
  for name, (bindings, _, _, _) in specs.items():
    for path in [b.split(" = ")[1].strip("'") for b in bindings
                 if "_path" in b]:
      if not os.path.exists(path):
        raise SystemExit("missing %s: pass --data (the folder of "
                         "shared/data's README)" % path)
  by_key = {(r["dataset"], r["variant"], r["seed"]): r for r in committed}
  other = sorted(r["run"] for r in committed
                 if r.get("vocabulary") != vocabulary)
  if other:
    raise SystemExit("the committed results (--out) hold runs of another "
                     "vocabulary than %s (e.g. %s): pass another --out"
                     % (vocabulary and "pieces " + vocabulary[:12] or "bytes",
                        other[:3]))
  evaluated_steps = {k: evaluated(r) for k, r in by_key.items()}
  other = off_schedule(committed, eval_every)
  if other:
    raise SystemExit("the committed results (--out) hold runs evaluated at "
                     "other steps than every %d (e.g. %s): pass another --out "
                     "for these settings" % (eval_every, other[:3]))
  finished = {k: r for k, r in by_key.items()
              if evaluated_steps[k][:len(eval_steps)] == eval_steps}
  # committed runs outside this invocation's plan stay in the tables, and so
  # do shorter ones until they are extended
  planned = set(runs)
  kept = [r for k, r in by_key.items() if k not in planned]
  shorter = {k: r for k, r in by_key.items()
             if k in planned and k not in finished}
  # committed runs of the plan, not reached yet
  waiting = {k: r for k, r in finished.items() if k in planned}
  rows = []
  for dataset, variant, seed in runs:
    if (dataset, variant, seed) in finished:
      last = evaluated_steps[(dataset, variant, seed)][-1]
      print("[quality] %s %s seed %d: committed before, skipped%s"
            % (dataset, variant, seed, "" if last == steps else
               " (committed to step %d, more than --steps %d: kept as "
               "committed)" % (last, steps)), flush=True)
      rows.append(waiting.pop((dataset, variant, seed)))
      continue
    bindings, eval_files, eval_bindings, metric = specs[dataset]
    gin_file, extra = all_variants[variant]
    offset, start = 0, {}
    if variant.endswith("/pretrained"):  # init_checkpoint's step comes over
      checkpoint, offset, perplexity = pretrained(variant.split("/")[0], seed)
      extra = extra + ["utils.run.init_checkpoint = %r" % checkpoint]
      # which pretraining it started from: one pretrained again on another
      # machine (model dirs do not travel) differs in the last bits
      start = {"pretrained_perplexity": round(perplexity, 4)}
    def sweep_to(last):
      """The run trained to step `last`, evaluated at the eval steps to it."""
      return sweep_lib.Sweep(
          variants={variant: gin_file},
          base_gin_files=["experiments/bench_small.gin"],
          grid={"seeded_train_dataset_fn.seed": [seed]},
          bindings=bindings + extra + SEEDED + [
              "dropout_rate = %s" % dropout,
              "utils.run.train_steps = %d" % (offset + last),
              "utils.run.save_checkpoints_steps = %d" % eval_every,
              # checkpoints are written at the end of a loop (100 steps by
              # default): make the loops end on every eval step
              "utils.run.iterations_per_loop = %d" % math.gcd(eval_every, 100),
              "utils.run.keep_checkpoint_max = None"],
          eval_gin_files=eval_files,
          eval_bindings=[
              "run.dataset_split = 'validation'",
              "utils.get_variable_dtype.activation_dtype = 'float32'"]
          + eval_bindings, metric=metric,
          eval_steps=[offset + step for step in eval_steps if step <= last])
    sweep = sweep_to(steps)
    d = model_dirs(work_dir, dataset, vocabulary)
    os.makedirs(d, exist_ok=True)
    (run_id, v, f, crossed), = sweep.runs()  # a slug: the model dir's name
    if shorter.pop((dataset, variant, seed), None):
      # run_one trains it on: T5 resumes from the model dir's last checkpoint
      # (under a constant learning rate the same optimisation; the input
      # pipeline starts its seeded order again); without the dir, anew
      leg = evaluated_steps[(dataset, variant, seed)][-1]
      resumed = os.path.isdir(os.path.join(d, run_id))
      print("[quality] %s %s seed %d: committed to step %d, %s to %d"
            % (dataset, variant, seed, leg, "extended" if resumed else
               "trained anew (its model dir is not on this machine)%s" % (
                   " in the same two legs: to %d, then on" % leg
                   if in_legs else ""), steps), flush=True)
      if in_legs and not resumed:
        sweep_lib.run_one(sweep_to(leg), run_id, v, f, crossed, d,
                          log=lambda m: print(m, flush=True))
    r = sweep_lib.run_one(sweep, run_id, v, f, crossed, d,
                          log=lambda m: print(m, flush=True))
    r.update(dataset=dataset, seed=seed, offset=offset, **start)
    if vocabulary:
      r.update(vocabulary=vocabulary)
    rows.append(r)
    # every committed run stays in the tables, reached or not
    on_result(rows + list(waiting.values()) + kept + list(shorter.values()))
  if rows and all(k in finished for k in runs):
    on_result(rows + kept)  # nothing new: tables as committed, restamped
  return rows


def curve_rows(kind, runs):
  """One row per (dataset, variant, seed, step) in the metric's own units;
  steps counted from the start of the run's own training (finetuning)."""
  out = []
  for r in runs:
    for step, value in r["curve"]:
      step -= r.get("offset", 0)
      if METRIC[kind] == "perplexity":  # neg log perplexity -> perplexity
        value = math.exp(-value)
      elif value <= 1.0 and "accuracy" in r["metric"]:
        value *= 100.0
      out.append({"dataset": r["dataset"], "variant": r["variant"],
                  "seed": r["seed"], "step": step,
                  METRIC[kind]: round(value, 4)})
  return out


def summarize(kind, runs, out, info, planned, steps, dropout):
  """Write <kind>.csv/.json/.md/.png from the finished runs (called after
  every run, so a partial benchmark has its tables too); planned: the
  invocation's [(dataset, variant, seed)], trained to `steps`. A row whose
  seeds reach different steps (a dataset half way through being trained
  on further) is compared at the last step all its seeds have."""
  metric = METRIC[kind]
  lower = metric == "perplexity"
  rows = curve_rows(kind, runs)
  name = "quality_%s" % kind
  benchlib.write_csv(os.path.join(out, name + ".csv"),
                     ["dataset", "variant", "seed", "step", metric], rows)
  benchlib.write_json(os.path.join(out, name + ".json"),
                      {"stamp": info, "runs": runs})
  curves = {}  # (dataset, variant) -> {seed: {step: value}}
  for r in rows:
    curves.setdefault((r["dataset"], r["variant"]), {}).setdefault(
        r["seed"], {})[r["step"]] = r[metric]
  best = min if lower else max
  what = ("validation perplexity per %s (lower is better)" % (
      "byte" if kind == "lm" else "target word piece") if lower
          else "validation accuracy, % (higher is better)")
  plan = set(planned)
  mine = [r for r in runs if (r["dataset"], r["variant"], r["seed"]) in plan]
  done = sum(r["curve"][-1][0] - r.get("offset", 0) >= steps for r in mine)
  outside = ("" if len(mine) == len(runs) else " (and %d committed before, "
             "outside this invocation's plan)" % (len(runs) - len(mine)))
  with open(os.path.join(out, name + ".md"), "w") as f:
    f.write("# Quality: %s\n\n%s\n\n%s. %d of %d runs trained to step %d or "
            "further%s. Dropout %s for every variant. %s\n\n" % (
                name, benchlib.stamp_line(info), what, done, len(planned),
                steps, outside, dropout, PACKING[kind]))
    for ds in sorted({k[0] for k in curves}):
      f.write("## %s\n\n| variant | seeds | last step of all seeds | at last "
              "step: mean (min-max) | last %d evaluations: mean (min-max) | "
              "best over steps: mean (min-max) | best step (per seed) |\n"
              "|---|---:|---:|---:|---:|---:|---|\n" % (ds, WINDOW))
      table = []
      for (d, v), by_seed in curves.items():
        if d != ds:
          continue
        # the last step every seed has; seeds further on are cut there
        step = common_steps(by_seed)[-1]
        upto = [{s: x for s, x in c.items() if s <= step}
                for c in by_seed.values()]
        further = sum(max(c) > step for c in by_seed.values())
        last = [c[step] for c in upto]
        # one evaluation swings by points on a small dev set: a window too
        window = [statistics.mean([c[s] for s in sorted(c)[-WINDOW:]])
                  for c in upto]
        bests = [best(c.values()) for c in upto]
        best_steps = [min(s for s in c if c[s] == best(c.values()))
                      for c in upto]
        table.append((statistics.mean(last), v, len(by_seed), "%d%s" % (
            step, " (%d further)" % further if further else ""), last, window,
                      bests, best_steps))
      table.sort(reverse=not lower)
      for mean, v, n, step, last, window, bests, best_steps in table:
        f.write("| %s | %d | %s | %s | %s | %s | %s |\n" % (
            v, n, step, spread(last), spread(window), spread(bests),
            ", ".join(map(str, best_steps))))
      f.write("\n" + ranking_by_step(curves, ds, lower) + "\n")
      for source, pairs in ORDERS.get(kind, {}).get(ds, []):
        f.write(orderings(curves, ds, lower, source, pairs) + "\n")
    starts = {}
    for r in runs:
      if "pretrained_perplexity" in r:
        starts.setdefault(base(r["variant"]), []).append(
            r["pretrained_perplexity"])
    if starts:
      f.write("## Pretrained checkpoints\n\nThe validation perplexity of "
              "the checkpoint each /pretrained run started from (runs "
              "started from it), kept with these tables under "
              "checkpoints/ so that runs on later machines start from it "
              "too. Two values for one variant: it was pretrained again, "
              "with the same seed, on another machine (before checkpoints "
              "were kept), where sums in another order (another CPU or "
              "thread count) change the last bits, which training "
              "amplifies.\n\n")
      for v, values in sorted(starts.items()):
        f.write("- %s: %s\n" % (v, ", ".join(
            "%.4f (%d)" % (x, values.count(x)) for x in sorted(set(values)))))
  plot(curves, os.path.join(out, name + ".png"), what)
  print("wrote %s/%s.{csv,md,json,png}" % (out, name), flush=True)


def common_steps(*rows):
  """The steps, in order, that every seed of every row ({seed: {step: value}})
  has been evaluated at."""
  return sorted(set.intersection(*(set(c) for by_seed in rows
                                   for c in by_seed.values())))


def spread(values):
  """'mean (min-max)' of the seeds' values."""
  return "%.2f (%.2f-%.2f)" % (statistics.mean(values), min(values),
                               max(values))


def unchanged_since(steps, values):
  """The first of `steps` from which `values` (one per step) stay equal to the
  last one; None without steps."""
  since = None
  for step, value in reversed(list(zip(steps, values))):
    if value != values[-1]:
      break
    since = step
  return since


def spread_status(curves, ds, a, b, step, lower):
  """'holds' when every seed of a is ahead of every seed of b at `step`,
  'reversed' when every seed of b is ahead of every seed of a, 'within the
  spread' otherwise (every seed of both has `step`)."""
  ahead = (lambda x, y: x < y) if lower else (lambda x, y: x > y)
  va = [c[step] for c in curves[(ds, a)].values()]
  vb = [c[step] for c in curves[(ds, b)].values()]
  if all(ahead(x, y) for x in va for y in vb):
    return "holds"
  if all(ahead(y, x) for x in va for y in vb):
    return "reversed"
  return "within the spread"


def orderings(curves, ds, lower, source, pairs):
  """Each pair (a, b) that `source` orders (a ahead of b), checked here at
  every step (spread_status); 'since' is the step from which the last step's
  status held at every evaluation. Needs 2 seeds of both (one seed has no
  spread)."""
  lines, counts = [], {"holds": 0, "reversed": 0}
  for a, b in pairs:
    if (ds, a) not in curves or (ds, b) not in curves:
      continue
    seeds = min(len(curves[(ds, a)]), len(curves[(ds, b)]))
    steps = common_steps(curves[(ds, a)], curves[(ds, b)])
    if seeds < 2 or not steps:
      lines.append(benchlib.md_row(["%s ahead of %s" % (a, b),
                                    "(%d seed)" % seeds, ""]))
      continue
    statuses = [spread_status(curves, ds, a, b, step, lower)
                for step in steps]
    now = statuses[-1]
    if now in counts:
      counts[now] += 1
    lines.append(benchlib.md_row([
        "%s ahead of %s" % (a, b), "%s at %d" % (now, steps[-1]),
        unchanged_since(steps, statuses) if now in counts else ""]))
  if not lines:
    return ""
  return ("Pairs ordered by %s, checked against the seed spread here: %d "
          "hold, %d reversed, %d within the spread or not yet on 2 seeds."
          "\n\n| pair | last step | since step |\n|---|---|---:|\n%s\n"
          % (source, counts["holds"], counts["reversed"],
             len(lines) - sum(counts.values()), "\n".join(lines)))


def ranking_by_step(curves, ds, lower):
  """The order of the variants' seed means at each step, and the step from
  which it no longer changes; likewise for the pairs that the seed spread
  separates, which moves less with noise than the order of means. Only the
  steps every seed of every row has: a ranking of some rows is none."""
  steps = common_steps(*(c for (d, _), c in curves.items() if d == ds))
  lines, orders, separated, rows = [], [], [], []
  for step in steps:
    means = []
    for (d, v), by_seed in curves.items():
      if d == ds:
        means.append((statistics.mean(c[step] for c in by_seed.values()), v))
    means.sort(reverse=not lower)
    orders.append([v for _, v in means])
    lines.append("| %d | %s |" % (step, " > ".join(
        "%s %.2f" % (v, m) for m, v in means)))
    # the pairs one of which is ahead at every seed (rows with 2+ seeds)
    rows = sorted(v for _, v in means if len(curves[(ds, v)]) > 1)
    separated.append({(a, b, st) for i, a in enumerate(rows)
                      for b in rows[i + 1:]
                      if (st := spread_status(curves, ds, a, b, step, lower))
                      != "within the spread"})
  pairs = len(rows) * (len(rows) - 1) // 2
  return ("Ranking (best first) by step; unchanged from step %s on. The pairs "
          "of rows that the seed spread separates (every seed of one ahead of "
          "every seed of the other; rows with 2 seeds or more): %d of %d at "
          "the last step, the same pairs the same way round from step %s on. "
          "%s\n\n| step | ranking |\n|---:|---|\n%s\n" % (
              unchanged_since(steps, orders), len(separated[-1]), pairs,
              unchanged_since(steps, separated),
              changed_sides(steps, separated), "\n".join(lines)))


def changed_sides(steps, separated, shown=6):
  """The pairs that crossed outside the spread: one row ahead of the other
  at an evaluation and behind it at a later one, every seed both times (a
  pair leaving or entering the spread is not a crossing); each pair at its
  last crossing, latest first. separated: per step, {(a, b, status)}."""
  side, last = {}, {}
  for step, now in zip(steps, separated):
    for a, b, status in now:
      if side.get((a, b), status) != status:
        last[(a, b)] = step
      side[(a, b)] = status
  if not last:
    return "No pair changed sides outside the spread."
  latest = sorted(last.items(), key=lambda kv: (-kv[1], kv[0]))
  return ("Pairs that changed sides outside the spread (one ahead of the "
          "other at an evaluation, behind it at a later one): %d, latest "
          "first: %s%s." % (
              len(latest),
              "; ".join("%s and %s at %d" % (a, b, step)
                        for (a, b), step in latest[:shown]),
              "" if len(latest) <= shown else
              "; %d more" % (len(latest) - shown)))


# One panel per group of rows (those the curves have), so that 24 LM rows stay
# readable. A row has its variant's colour (stock_R and R share one), its line
# dashed when it changes a variant (CHANGED); the rows of ours it changes, and
# vanilla, are drawn dotted as references where they are not members.
CHANGED = VARIATIONS + ("/scratch",)
# (title, which rows, what the dashed lines are)
PANELS = [
    ("the paper's rows", lambda v: "/" not in v and not v.startswith("stock_"),
     None),
    ("mesh-tensorflow's Synthesizer", lambda v: v.startswith("stock_"),
     "unpacked"),
    ("ours unpacked, with T5's relative bias or the release's R",
     lambda v: not v.startswith("stock_") and v.endswith(VARIATIONS),
     "the changed rows"),
    ("finetuned from span corruption or from scratch",
     lambda v: v.endswith(("/pretrained", "/scratch")), "from scratch"),
]


def panel_title(title, dashed, members, references):
  """A panel's title, naming only the line styles it draws."""
  styles = ["dashed: %s" % dashed] if any(
      v.endswith(CHANGED) for v in members) else []
  if references:
    styles.append("dotted: %s" % ", ".join(references))
  return "%s%s" % (title, " (%s)" % "; ".join(styles) if styles else "")


def base(row):
  """The variant of ours a row changes: stock_R/unpacked -> R."""
  return row.split("/")[0].replace("stock_", "")


def plot(curves, path, what):
  plt = benchlib.pyplot()
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top
  dss = sorted({k[0] for k in curves})
  panels = [panel for panel in PANELS
            if any(panel[1](v) for _, v in curves)]
  fig, axes = plt.subplots(len(dss), len(panels),
                           figsize=(6 * len(panels), 4.5 * len(dss)),
                           squeeze=False)
  cmap = plt.get_cmap("tab10")
  for row, ds in zip(axes, dss):
    for ax, (title, member, dashed) in zip(row, panels):
      members = [v for d, v in sorted(curves) if d == ds and member(v)]
      bases = sorted({base(v) for v in members} | {"vanilla"},
                     key=lambda b: (b != "vanilla", b))
      references = [b for b in bases if b not in members and (ds, b) in curves]
      for v in members + references:
        by_seed = curves[(ds, v)]
        steps = common_steps(by_seed)
        vals = [[c[s] for c in by_seed.values()] for s in steps]
        colour = cmap(bases.index(base(v)) % 10)
        style = (":" if v in references else
                 "--" if v.endswith(CHANGED) else "-")
        ax.plot(steps, [statistics.mean(x) for x in vals], style,
                color=colour, label="%s (%d)" % (v, len(by_seed)), lw=1.2)
        ax.fill_between(steps, [min(x) for x in vals],
                        [max(x) for x in vals], color=colour, alpha=0.15)
      ax.set_xlabel("training step")
      # wrapped: a long title runs into the next panel's
      ax.set_title("%s\n%s; band = seed min-max" % (textwrap.fill(
          "%s: %s" % (ds, panel_title(title, dashed, members, references)),
          80), what), fontsize=8)
      ax.legend(fontsize=6, ncol=2)
      if "perplexity" in what:
        ax.set_yscale("log")
        # plain numbers: within one decade every tick is a minor one, which
        # matplotlib would print as 4x10^1 or not at all
        plain = ticker.FuncFormatter(lambda y, _: "%g" % y)
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


def hold_tables(out, kind):
  """Lock `out`'s tables of `kind` for this process: each invocation rewrites
  them from the runs it has, so a second one of the same kind would drop the
  first one's runs. Two kinds (lm beside pretrain) may share `out`.
  -> the open lock file (held until it is closed or the process ends)."""
  lock = open(os.path.join(out, ".quality_%s.lock" % kind), "w")
  try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    lock.close()
    raise SystemExit(
        "another `quality.py %s` is writing its tables in %s (each rewrites "
        "them from the runs it has, so one would drop the other's): wait "
        "for it, or pass another --out" % (kind, out)) from None
  return lock


def has_checkpoint(run_dir, step):
  """Whether run_dir holds a finished run's checkpoint at `step`."""
  return (os.path.exists(os.path.join(run_dir, "model.ckpt-%d.index" % step))
          and os.path.exists(os.path.join(run_dir, "result.json")))


def keep_checkpoint(run_dir, step, kept):
  """Copy what init_checkpoint reads of run_dir's checkpoint at `step` (its
  index and data, not the graph) and the run's result.json to `kept`, whole
  or not at all (a copy stopped half way is not taken for one)."""
  prefix = "model.ckpt-%d." % step
  tmp = kept + ".tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  for name in os.listdir(run_dir):
    if name == "result.json" or (name.startswith(prefix) and
                                 not name.endswith(".meta")):
      shutil.copy(os.path.join(run_dir, name), tmp)
  shutil.rmtree(kept, ignore_errors=True)
  os.replace(tmp, kept)


def restore_checkpoint(kept, step, run_dir):
  """A model dir that T5 trains on from kept's checkpoint at `step`: its
  files (result.json holds the curve so far) and the state file naming it."""
  tmp = run_dir + ".tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  shutil.copytree(kept, tmp)
  with open(os.path.join(tmp, "checkpoint"), "w") as f:
    f.write('model_checkpoint_path: "model.ckpt-%d"\n' % step)
  os.replace(tmp, run_dir)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("kind", choices=["lm", "cls", "pretrain"],
                 help="pretrain: span corruption, then finetuning (its own "
                 "tables quality_pretrain.* and quality_finetune.*)")
  p.add_argument("--data", default=os.path.join(benchlib.ROOT, "..", "shared",
                                                "data"))
  p.add_argument("--seeds", type=int, nargs="+", default=None,
                 help="the same seeds for every variant (default: 3 for the "
                 "main rows, 2 for the rest); pretrain: the finetuning's")
  p.add_argument("--pretrain_seeds", type=int, nargs="+", default=[1, 2, 3],
                 help="pretrain: the span-corruption seeds; every finetuning "
                 "seed starts from the first one's checkpoint, the others "
                 "(run after all finetuning) give the pretraining table its "
                 "spread")
  p.add_argument("--steps", type=int, default=None,
                 help="training (finetuning) steps (default: lm 3000, cls "
                 "and finetuning 2000); more than the committed runs have "
                 "trains them on from their model dirs, fewer keeps them "
                 "as committed")
  p.add_argument("--pretrain_steps", type=int, default=2000,
                 help="pretrain: the step every finetuning starts from")
  p.add_argument("--pretrain_table_steps", type=int, default=4000,
                 help="pretrain: last of all, every pretraining seed is "
                 "trained on to this step for the pretraining table (its "
                 "orders still move at --pretrain_steps)")
  p.add_argument("--eval_every", type=int, default=250)
  p.add_argument("--dropout", type=float, default=0.1)
  p.add_argument("--variants", default=None,
                 help="comma-separated subset (default: all of the table; "
                 "pretrain: the base names, e.g. R,D+V)")
  p.add_argument("--datasets", default=None,
                 help="comma-separated subset (cls, finetuning: sst2,ag_news)")
  p.add_argument("--out", default=os.path.join(benchlib.RESULTS, "quality"),
                 help="tables; runs already in its JSON are not run again "
                 "(use another --out for other settings)")
  p.add_argument("--work_dir", default=os.path.join(benchlib.ROOT, "runs",
                                                    "quality"),
                 help="model dirs (not committed); finished runs are reused")
  p.add_argument("--merge", nargs="+", default=None, metavar="OUT",
                 help="tables only, nothing trained: add the runs of these "
                 "other --out dirs (one benchmark split across processes "
                 "or machines, e.g. by --variants, each with its own --out) "
                 "to --out's and rewrite its tables; a run in several is "
                 "taken from the one trained furthest")
  args = p.parse_args(argv)
  os.makedirs(args.out, exist_ok=True)
  with hold_tables(args.out, args.kind):
    run_stages(args)


def run_stages(args):
  """Every stage of the kind main() parsed, its tables rewritten after each
  run."""
  from synth_mtf import sweep as sweep_lib  # pylint: disable=g-import-not-at-top
  data = os.path.abspath(args.data)
  info = benchlib.stamp()
  variants = args.variants.split(",") if args.variants else None
  first = args.pretrain_seeds[0]  # the seed every finetuning starts from
  if args.kind == "pretrain":
    # each variant's pretraining, then its finetuning (pretrained() keeps
    # the checkpoint with the tables, for the machines that follow); the
    # other pretraining seeds last: they serve the pretraining table alone
    others = args.pretrain_seeds[1:]
    names = variants or list(PRETRAIN_VARIANTS)
    stages = [stage for v in names for stage in [
        ("pretrain", args.pretrain_steps, [v], [first]),
        ("finetune", args.steps or 2000, ["%s/%s" % (v, how) for how in (
            "pretrained", "scratch")], args.seeds)]]
    if others:
      stages.append(("pretrain", args.pretrain_steps, names, others))
    if args.pretrain_table_steps > args.pretrain_steps:
      # the pretraining table's orders still move at --pretrain_steps: every
      # seed trained on (finetuning keeps starting from --pretrain_steps)
      stages.append(("pretrain", args.pretrain_table_steps, names,
                     args.pretrain_seeds))
  else:
    stages = [(args.kind, args.steps or {"lm": 3000, "cls": 2000}[args.kind],
               variants, args.seeds)]

  def plan_of(kind, names, seeds):
    return plan(kind, data, names, seeds,
                args.datasets.split(",") if args.datasets and
                kind != "pretrain" else None)

  def planned(kind):
    """The tables count what is done of their kind's whole plan."""
    return list(dict.fromkeys(r for k, _, ns, ss in stages if k == kind
                              for r in plan_of(k, ns, ss)))

  if args.merge:  # tables only: nothing is trained
    kinds = list(dict.fromkeys(k for k, _, _, _ in stages))
    for kind, (runs, sources, changed) in merge(
        args.out, args.merge, kinds, args.eval_every).items():
      if not changed:
        print("[quality] %s: the --merge dirs add nothing; its tables are "
              "as they were" % kind, flush=True)
        continue
      # the stamp names the invocations that trained the runs merged in
      command = "%s; merged with the runs of %s" % (info["command"], "; ".join(
          c for d, c in sources if d != args.out))
      steps = max(st for k, st, _, _ in stages if k == kind)
      summarize(kind, runs, args.out, dict(info, command=command),
                planned(kind), steps, args.dropout)
    return

  pieces = (train_pieces(data, args.work_dir) if args.kind != "lm" else None)

  def kept_run(variant):
    """(the kept checkpoint's dir, the model dir) of `variant`'s pretraining
    with the first of --pretrain_seeds."""
    (run_id, _, _, _), = sweep_lib.Sweep(
        variants={variant: PRETRAIN_VARIANTS[variant][0]},
        grid={"seeded_train_dataset_fn.seed": [first]}).runs()
    return tuple(os.path.join(model_dirs(os.path.join(top, sub),
                                         "span_corruption", pieces[1]), run_id)
                 for top, sub in ((args.out, "checkpoints"),
                                  (args.work_dir, "pretrain")))

  def pretrained(variant, seed):
    """The span-corruption checkpoint of `variant` (the first of
    --pretrain_seeds for every finetuning seed), its step and its
    validation perplexity there. It is
    kept under --out (committed with the tables: model dirs do not outlive a
    machine, and a variant's finetuning may span machines), so that every
    seed starts from the same one; pretrained again only if neither that
    nor its model dir is there."""
    del seed
    step = args.pretrain_steps
    kept, run_dir = kept_run(variant)
    if not has_checkpoint(kept, step):
      if not has_checkpoint(run_dir, step):
        run("pretrain", data, [("span_corruption", variant, first)], step,
            args.eval_every, args.dropout,
            os.path.join(args.work_dir, "pretrain"), lambda rows: None,
            pieces=pieces)
      keep_checkpoint(run_dir, step, kept)
    result = benchlib.read_json(os.path.join(kept, "result.json"), None)
    return (os.path.join(kept, "model.ckpt-%d" % step), step,
            math.exp(-result["value"]))

  for kind, steps, names, seeds in stages:
    runs = plan_of(kind, names, seeds)
    everything = planned(kind)
    results = os.path.join(args.out, "quality_%s.json" % kind)
    committed = benchlib.read_json(results, {"runs": []})["runs"]
    if kind == "pretrain" and steps > args.pretrain_steps:
      # the first seed trained on as the others are, from --pretrain_steps:
      # on a machine without its model dir, from the kept checkpoint (which
      # pretrained() makes again if it is gone too)
      reached = {r["variant"] for r in committed
                 if r["seed"] == first and r.get("curve") and
                 r["curve"][-1][0] >= steps}
      for variant in [v for v in names if v not in reached]:
        kept, run_dir = kept_run(variant)
        if not os.path.isdir(run_dir):
          pretrained(variant, first)
        if not os.path.isdir(run_dir):
          restore_checkpoint(kept, args.pretrain_steps, run_dir)
    run(kind, data, runs, steps, args.eval_every, args.dropout,
        os.path.join(args.work_dir, kind),
        functools.partial(summarize, kind, out=args.out, info=info,
                          planned=everything, steps=steps,
                          dropout=args.dropout),
        committed, pretrained, pieces,
        # the pretraining table's seeds are all trained in two legs (seed 1
        # from its kept checkpoint where its model dir is gone)
        in_legs=kind == "pretrain")


if __name__ == "__main__":
  main()
