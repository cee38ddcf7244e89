"""The quality benchmark's data: the datasets of each kind (as gin bindings of
the local tasks) and the word-piece vocabulary of classification and
pretraining."""

import csv
import hashlib
import os

UNPACKED = "mesh_train_dataset_fn.pack = False"
# Classification and pretraining read word pieces, the LM bytes. Measured on
# SST-2, vanilla at step 2000: bytes 50.9%, the majority class (training
# accuracy 55%: one label token per example teaches it no words); 2000 pieces
# 78.4%, 8000 pieces 77.8% and 1.4x slower (the embedding and softmax).
PIECES = 2000
AG_NEWS_TRAIN_ROWS = 6600  # of the 7,600 rows; the last 1,000 evaluate


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
