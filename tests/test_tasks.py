"""Tasks: TFDS registrations on mock data; local-file tasks on the real files in
../shared/data and on broken files made here (each error asserted)."""

import csv
import logging
import os

import gin
import pytest
import seqio
import tensorflow_datasets as tfds

import synth_mtf  # noqa: F401  (registers the tasks)
from synth_mtf.tasks import generated
from synth_mtf.tasks import local_files
from synth_mtf.tasks import tfds_tasks

DATA = os.environ.get("SYNTH_MTF_DATA",
                      os.path.join(os.path.dirname(__file__), "..", "..",
                                   "shared", "data"))
needs_data = pytest.mark.skipif(not os.path.isdir(DATA),
                                reason="no ../shared/data on this machine")


@pytest.fixture(autouse=True)
def _clear_gin():
  yield
  gin.clear_config()


def byte_twin(task):
  """The task with a byte vocabulary: T5's SentencePiece model lives on GCS."""
  return seqio.Task(task.name + "_bytes_test", source=task.source,
                    preprocessors=task.preprocessors,
                    output_features={k: seqio.Feature(seqio.ByteVocabulary())
                                     for k in task.output_features})


@pytest.mark.parametrize("name,prefix,keys,labels", [
    ("synth_mtf_ag_news", "ag_news", ("title", "description"),
     tfds_tasks.AG_NEWS_LABELS),
    ("synth_mtf_imdb", "imdb", ("text",), tfds_tasks.IMDB_LABELS)])
def test_tfds_classification_tasks_on_mock_data(name, prefix, keys, labels):
  task = seqio.get_mixture_or_task(name)
  with tfds.testing.mock_data(num_examples=4):
    raw = list(tfds.as_numpy(task.source.get_dataset("train", shuffle=False)))
    got = list(tfds.as_numpy(byte_twin(task).get_dataset(
        {"inputs": 512, "targets": 16}, split="train", shuffle=False,
        try_in_mem_cache=False)))
  assert len(got) == len(raw) == 4
  for r, g in zip(raw, got):
    text = b" ".join(r[k] for k in keys).decode()
    assert g["inputs_pretokenized"].decode() == "%s: %s" % (prefix, text)
    assert g["targets_pretokenized"].decode() == labels[r["label"]]
    want = seqio.ByteVocabulary().encode(labels[r["label"]]) + [1]  # EOS
    assert list(g["targets"]) == want


def test_lm1b_on_mock_data_splits_long_texts_into_targets_length():
  task = seqio.get_mixture_or_task("synth_mtf_lm1b")
  with tfds.testing.mock_data(num_examples=3):
    raw = list(tfds.as_numpy(task.source.get_dataset("train", shuffle=False)))
    got = list(tfds.as_numpy(byte_twin(task).get_dataset(
        {"targets": 8}, split="train", shuffle=False, try_in_mem_cache=False)))
  pieces = [bytes(t for t in g["targets"][:-1]) for g in got]
  assert all(len(g["targets"]) <= 8 for g in got)
  # nothing lost: the pieces put back together are the texts (byte ids = b+3)
  joined = b"".join(bytes(b - 3 for b in p) for p in pieces)
  assert joined == b"".join(r["text"] for r in raw)
  assert set(got[0]) == {"targets"}


def test_generated_task_is_deterministic_and_correct():
  a = generated.make_examples("reverse", "validation")
  assert a == generated.make_examples("reverse", "validation")
  for inputs, targets in a:
    assert inputs.startswith("reverse: ")
    assert targets.split() == inputs[len("reverse: "):].split()[::-1]
  train = generated.make_examples("reverse", "train")
  assert len(train) == generated.SPLIT_SIZES["train"]
  assert not set(a) & set(train)  # held out: accuracy is not memorization


# ---- local files on the real data ------------------------------------------

@needs_data
def test_local_sst2_tsv():
  train = os.path.join(DATA, "sst2", "train.tsv")
  with gin.unlock_config():
    gin.parse_config([
        "local_classification.train_path = %r" % train,
        "local_classification.validation_path = %r"
        % os.path.join(DATA, "sst2", "dev.tsv"),
        "local_classification.header = True",
        "local_classification.labels = {'0': 'negative', '1': 'positive'}"])
  examples = local_files.local_classification("train")
  with open(train, encoding="utf-8") as f:
    rows = [line.rstrip("\n").split("\t") for line in f][1:]
  assert len(examples) == len(rows) == 67349
  assert examples[0] == {"inputs": "classify: " + rows[0][1].strip(),
                         "targets": ["negative", "positive"][int(rows[0][0])]}
  assert len(local_files.local_classification("validation")) == 872
  # and through seqio, as the CLI reads it
  task = seqio.get_mixture_or_task("synth_mtf_local_classification")
  ex = next(iter(tfds.as_numpy(task.get_dataset(
      {"inputs": 256, "targets": 9}, split="validation", shuffle=False))))
  assert ex["targets_pretokenized"] in (b"negative", b"positive")


@needs_data
def test_local_ag_news_csv_split_in_two():
  path = os.path.join(DATA, "ag_news", "test.csv")
  with gin.unlock_config():
    gin.parse_config([
        "local_classification.train_path = %r" % path,
        "local_classification.validation_path = %r" % path,
        "local_classification.file_format = 'csv'",
        "local_classification.text_columns = (1, 2)",
        "local_classification.labels = {'1': 'World', '2': 'Sports', "
        "'3': 'Business', '4': 'Sci/Tech'}",
        "local_classification.backslash_is_newline = True",
        "local_classification.train_rows = (0, 6600)",
        "local_classification.validation_rows = (6600, 7600)"])
  train = local_files.local_classification("train")
  valid = local_files.local_classification("validation")
  with open(path, encoding="utf-8", newline="") as f:
    rows = list(csv.reader(f))
  assert (len(train), len(valid), len(rows)) == (6600, 1000, 7600)
  names = {"1": "World", "2": "Sports", "3": "Business", "4": "Sci/Tech"}
  for ex, row in [(train[1], rows[1]), (valid[-1], rows[-1])]:
    text = " ".join((row[1] + " " + row[2]).replace("\\", " ").split())
    assert ex == {"inputs": "classify: " + text, "targets": names[row[0]]}


@needs_data
def test_local_wikitext_lm():
  path = os.path.join(DATA, "wikitext2", "wiki.valid.tokens")
  with gin.unlock_config():
    gin.parse_config(["local_lm.train_path = %r" % path])
  docs = local_files.local_lm("train")
  with open(path, encoding="utf-8") as f:
    lines = [line.strip() for line in f if line.strip()]
  assert [d["targets"] for d in docs] == lines
  task = seqio.get_mixture_or_task("synth_mtf_local_lm")
  got = list(tfds.as_numpy(task.get_dataset({"targets": 64}, split="train",
                                            shuffle=False).take(50)))
  assert all(len(g["targets"]) <= 64 for g in got)


# ---- broken files ------------------------------------------------------------

def write(tmp_path, name, data):
  p = tmp_path / name
  p.write_bytes(data if isinstance(data, bytes) else data.encode())
  return str(p)


def bind(path, **kw):
  with gin.unlock_config():
    gin.bind_parameter("local_classification.train_path", path)
    gin.bind_parameter("local_classification.labels", ["neg", "pos"])
    for k, v in kw.items():
      gin.bind_parameter("local_classification." + k, v)


@pytest.mark.parametrize("content,problem", [
    ("0\tfine\n1\n", r":2: expected at least 2 columns, found 1"),
    ("0\tfine\n7\tbad label\n", r":2: unknown label '7'"),
    ("0\tfine\n1\t   \n", r":2: empty text"),
    (b"0\tfine\n1\tbad \xff byte\n", r":2: not valid utf-8"),
])
def test_malformed_rows_name_file_and_line(tmp_path, content, problem):
  path = write(tmp_path, "broken.tsv", content)
  bind(path)
  with pytest.raises(local_files.MalformedFileError,
                     match=r"broken\.tsv" + problem + r".*skip_malformed = True"):
    local_files.local_classification("train")


def test_skipping_malformed_rows_is_counted(tmp_path, caplog):
  path = write(tmp_path, "mixed.tsv", "0\tgood one\n1\n7\tx\n1\tgood two\n")
  bind(path, skip_malformed=True)
  with caplog.at_level(logging.WARNING):
    examples = local_files.local_classification("train")
  assert [e["targets"] for e in examples] == ["neg", "pos"]
  assert "skipped 2 malformed rows" in caplog.text


def test_missing_and_empty_files(tmp_path):
  bind(str(tmp_path / "nope.tsv"))
  with pytest.raises(local_files.MalformedFileError, match="no such file"):
    local_files.local_classification("train")
  bind(write(tmp_path, "empty.tsv", ""))
  with pytest.raises(local_files.MalformedFileError, match="the file is empty"):
    local_files.local_classification("train")
  with pytest.raises(local_files.MalformedFileError,
                     match=r"local_classification.validation_path is not set"):
    local_files.local_classification("validation")


def test_lm_bad_encoding_and_csv_quote(tmp_path):
  with gin.unlock_config():
    gin.bind_parameter("local_lm.train_path",
                       write(tmp_path, "t.txt", b"ok\n\xfe\n"))
  with pytest.raises(local_files.MalformedFileError, match=r"t\.txt:2: not valid"):
    local_files.local_lm("train")
  bind(write(tmp_path, "q.csv", '"1","a","b"\n"0","unterminated\n'),
       file_format="csv")
  with pytest.raises(local_files.MalformedFileError,
                     match=r"q\.csv:2: unterminated quoted field"):
    local_files.local_classification("train")


def test_label_longer_than_targets_fails_instead_of_being_cut(tmp_path):
  """'Sci/Tech' + EOS is 9 byte tokens: with targets length 8 T5 would train on
  'Sci/Tec', which never matches the class at evaluation."""
  path = tmp_path / "news.tsv"
  path.write_text("Sci/Tech\tchips are fast\nWorld\tpeace talks\n")
  with gin.unlock_config():
    gin.parse_config(["local_classification.train_path = %r" % str(path)])
  task = seqio.get_mixture_or_task("synth_mtf_local_classification")
  fits = list(tfds.as_numpy(task.get_dataset(
      {"inputs": 32, "targets": 9}, split="train", shuffle=False)))
  assert [len(f["targets"]) for f in fits] == [9, 6]  # whole labels + EOS
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"sequence_length\[.{1,3}targets.{1,3}\]=8 and would be cut"):
    list(tfds.as_numpy(task.get_dataset({"inputs": 32, "targets": 8},
                                        split="train", shuffle=False)))
