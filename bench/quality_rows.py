"""The quality benchmark's rows and the orders published for them.

Each row is a variant of the catalogue (synth_mtf/variants.py) with, where
it changes the variant, extra gin bindings; the orders are the paper's and
Narang et al.'s rankings, which the tables check pair by pair against the
spread of seeds (quality_report.orderings()).
"""

from quality_data import UNPACKED
from synth_mtf import variants as catalogue

# the paper's main rows: 3 seeds (their finetuning too), every other row 2
THREE_SEEDS = {"vanilla", "R", "FR", "D", "R+V", "D+V"}
# mesh-tensorflow's Synthesizer in the modes Narang et al. ran
STOCK = ["stock_R", "stock_FR", "stock_D", "stock_R+V", "stock_D+V"]
METRIC = {"lm": "perplexity", "cls": "accuracy", "pretrain": "perplexity",
          "finetune": "accuracy"}

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

