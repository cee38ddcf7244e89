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


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory):
  """A small SentencePiece model in T5's style (pad 0, EOS 1, UNK 2), trained
  here on a few words, each of which becomes one piece."""
  import random  # pylint: disable=g-import-not-at-top
  words = ("classify : the quick brown fox jumps over lazy dog premise is "
           "true word answer positive negative").split()
  rng = random.Random(0)
  prefix = str(tmp_path_factory.mktemp("spm") / "spm")
  with open(prefix + ".txt", "w") as f:
    f.writelines(" ".join(rng.choice(words) for _ in range(12)) + "\n"
                 for _ in range(3000))
  return local_files.train_sentencepiece(prefix + ".txt", prefix, 400,
                                         hard_vocab_limit=False)


def encoder(vocabulary, spm_path):
  """An independent encoder for the bound vocabulary: sentencepiece itself, or
  UTF-8 bytes shifted past PAD, EOS and UNK."""
  if vocabulary == "bytes":
    return lambda text: [b + 3 for b in text.encode("utf-8")]
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  return spm.SentencePieceProcessor(model_file=spm_path).encode


@pytest.mark.parametrize("vocabulary", ["bytes", "sentencepiece"])
def test_local_span_corruption_is_t5s_objective(tmp_path, spm_model,
                                                vocabulary):
  """Inputs keep the text with each dropped span replaced by one sentinel; the
  targets hold each sentinel followed by the span it replaced. Putting the spans
  back reconstructs the document (the first targets-length of it). Sentinels
  are the vocabulary's top ids: with SentencePiece, its extra ids, none of
  which a word piece uses."""
  text = "the quick brown fox jumps over the lazy dog " * 3
  path = tmp_path / "text.txt"
  path.write_text(text + "\n")
  with gin.unlock_config():
    gin.parse_config(["local_lm.train_path = %r" % str(path)])
    if vocabulary == "sentencepiece":
      gin.parse_config(["local_vocabulary.sentencepiece_model = %r"
                        % spm_model])
  task = seqio.get_mixture_or_task("synth_mtf_local_span_corruption")
  (ex,) = list(tfds.as_numpy(task.get_dataset(
      {"inputs": 256, "targets": 64}, split="train", shuffle=False, seed=1)))
  words = encoder(vocabulary, spm_model)(text.strip())
  sentinel = local_files.VOCAB.vocab_size - 1  # T5: the last ids, downwards
  assert max(words) < sentinel - 99  # no word piece is a sentinel
  spans, current = {}, None
  for t in ex["targets"][:-1]:  # EOS last
    if t > sentinel - 100 and t <= sentinel:
      current = spans.setdefault(t, [])
    else:
      current.append(t)
  rebuilt = []
  for t in ex["inputs"][:-1]:
    rebuilt += spans[t] if t in spans else [t]
  assert spans and rebuilt == words


def test_local_classification_in_a_sentencepiece_vocabulary(tmp_path,
                                                            spm_model):
  """Inputs and targets are the SentencePiece model's own pieces (+ EOS), the
  model's vocabulary size plus T5's 100 sentinels; a label's length is checked
  in pieces, not bytes."""
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  sp = spm.SentencePieceProcessor(model_file=spm_model)
  path = write(tmp_path, "s.tsv", "1\tthe premise is true\n0\tword answer\n")
  bind(path, labels=["negative", "positive"])
  with gin.unlock_config():
    gin.parse_config(["local_vocabulary.sentencepiece_model = %r" % spm_model,
                      "utils.run.sequence_length = {'inputs': 32, "
                      "'targets': %d}" % (len(sp.encode("positive")) + 1)])
  assert len(sp.encode("positive")) + 1 < len("positive") + 1  # not bytes
  task = seqio.get_mixture_or_task("synth_mtf_local_classification")
  got = list(tfds.as_numpy(task.get_dataset(
      {"inputs": 32, "targets": 8}, split="train", shuffle=False)))
  assert [list(g["inputs"]) for g in got] == [
      sp.encode("classify: the premise is true") + [1],
      sp.encode("classify: word answer") + [1]]
  assert [list(g["targets"]) for g in got] == [sp.encode("positive") + [1],
                                               sp.encode("negative") + [1]]
  assert local_files.VOCAB.vocab_size == sp.get_piece_size() + 100
  assert local_files.VOCAB.decode(got[0]["targets"]) == "positive"
  with gin.unlock_config():  # bytes again: "positive" no longer fits
    gin.bind_parameter("local_vocabulary.sentencepiece_model", None)
  with pytest.raises(local_files.MalformedFileError,
                     match=r"s\.tsv:1: the label 'positive' is 8 tokens"):
    local_files.local_classification("train")


def test_local_vocabulary_bad_settings(tmp_path):
  missing = str(tmp_path / "nope.model")
  with gin.unlock_config():
    gin.bind_parameter("local_vocabulary.sentencepiece_model", missing)
  with pytest.raises(FileNotFoundError,
                     match=r"local_vocabulary\.sentencepiece_model = '.*nope"
                     r"\.model': no such file.*leave it unbound for bytes"):
    local_files.VOCAB.encode("text")
  with gin.unlock_config():
    gin.bind_parameter("local_vocabulary.sentencepiece_model", None)
    gin.bind_parameter("local_vocabulary.extra_ids", 10)
  with pytest.raises(ValueError,
                     match=r"local_vocabulary\.extra_ids = 10 applies to a "
                     r"SentencePiece model only"):
    local_files.VOCAB.encode("text")


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


# ---- issue 14: nothing lost in silence, each error names its fix -------------

NEWS = {"1": "World", "2": "Sports", "3": "Business", "4": "Sci/Tech"}


def news_csv(tmp_path, row3, quoted=True):
  """200 AG News-like rows (label, title, description); line 3 is row3."""
  form = '%d,"title %d","about %d"\n' if quoted else "%d,title %d,about %d\n"
  lines = [form % (i % 4 + 1, i, i) for i in range(200)]
  lines[2] = row3
  return write(tmp_path, "news.csv", "".join(lines)), lines


def csv_module_examples(lines):
  """What Python's csv module reads from these lines, as examples."""
  return [{"inputs": "classify: %s %s" % (r[1].strip(), r[2].strip()),
           "targets": NEWS[r[0]]} for r in csv.reader(lines)]


@pytest.mark.parametrize("skip", [False, True])
def test_csv_stray_quote_in_unquoted_field_reads_as_the_csv_module(
    tmp_path, caplog, skip):
  path, _ = news_csv(tmp_path, '3,Apple unveils 5" iPod,"It holds 1,000 '
                     'songs"\n')
  bind(path, file_format="csv", labels=NEWS, text_columns=(1, 2),
       skip_malformed=skip)
  with caplog.at_level(logging.WARNING):
    got = local_files.local_classification("train")
  with open(path, encoding="utf-8", newline="") as f:
    want = csv_module_examples(f)
  assert len(want) == 200 and got == want
  assert got[2]["inputs"] == ('classify: Apple unveils 5" iPod It holds 1,000 '
                              'songs')
  assert "skipped" not in caplog.text


def test_csv_unclosed_quote_costs_its_own_row_only(tmp_path, caplog):
  """csv would read the rest of the file into the open field: 1 row, not 198."""
  path, lines = news_csv(tmp_path, '3,"Apple unveils iPod,about 2\n',
                         quoted=False)
  bind(path, file_format="csv", labels=NEWS, text_columns=(1, 2))
  with pytest.raises(local_files.MalformedFileError,
                     match=r"news\.csv:3: unterminated quoted field.*"
                     r"skip_malformed = True"):
    local_files.local_classification("train")
  bind(path, file_format="csv", labels=NEWS, text_columns=(1, 2),
       skip_malformed=True)
  with caplog.at_level(logging.WARNING):
    got = local_files.local_classification("train")
  assert got == csv_module_examples(lines[:2] + lines[3:])
  assert len(got) == 199
  assert "skipped 1 malformed rows" in caplog.text and "(lines 3;" in caplog.text


def test_csv_rows_merged_by_a_quote_are_reported(tmp_path, caplog):
  """An unclosed quote that a later quote closes merges rows 3 and 4: legal
  CSV (kept, as the csv module reads it), but the log says where."""
  path, _ = news_csv(tmp_path, '3,"Apple unveils iPod,about 2\n')
  bind(path, file_format="csv", labels=NEWS, text_columns=(1, 2))
  with caplog.at_level(logging.WARNING):
    got = local_files.local_classification("train")
  with open(path, encoding="utf-8", newline="") as f:
    assert got == csv_module_examples(f)
  assert len(got) == 199
  assert "1 rows of %s span several lines" % path in caplog.text
  assert "lines 3-4" in caplog.text


@pytest.mark.parametrize("file_format,content,problem", [
    ("tsv", "0\tfine\n1\tgood\tand more\n0\tok\n",
     r":2: 3 columns where most rows have 2: a tab inside the text"),
    ("csv", "0,fine\n1,Apple, Inc. rises\n0,ok\n",
     r":2: 3 columns where most rows have 2: a comma inside an unquoted"),
])
def test_extra_column_is_a_malformed_row_not_a_cut_text(
    tmp_path, caplog, file_format, content, problem):
  path = write(tmp_path, "t." + file_format, content)
  bind(path, file_format=file_format)
  with pytest.raises(local_files.MalformedFileError,
                     match=r"t\.%s%s.*skip_malformed = True" % (file_format,
                                                                problem)):
    local_files.local_classification("train")
  bind(path, file_format=file_format, skip_malformed=True)
  with caplog.at_level(logging.WARNING):
    got = local_files.local_classification("train")
  sep = "\t" if file_format == "tsv" else ","
  rows = [line.split(sep) for line in content.splitlines()]
  assert len(rows[1]) == 3  # the expectation: that row has an extra column
  assert got == [{"inputs": "classify: " + t, "targets": ["neg", "pos"][int(l)]}
                 for l, t in (rows[0], rows[2])]
  assert "skipped 1 malformed rows" in caplog.text


@pytest.mark.parametrize("labels", [["neg", "pos"], None])
def test_header_true_on_a_file_without_one(tmp_path, labels):
  path = write(tmp_path, "t.tsv", "0\tfirst\n1\tsecond\n0\tthird\n")
  bind(path, header=True, labels=labels)
  with pytest.raises(local_files.MalformedFileError,
                     match=r"t\.tsv:1: local_classification\.header = True "
                     r"skips this row as a header, but it looks like an "
                     r"example: its label '0' is a known label\. Bind "
                     r"local_classification\.header = False"):
    local_files.local_classification("train")
  bind(path, header=False, labels=labels)
  assert len(local_files.local_classification("train")) == 3


@pytest.mark.parametrize("labels,why", [
    (["neg", "pos"], "not a known label while every other row's is"),
    (None, "in no other row while every other row's label is in several")])
def test_header_false_on_a_file_with_one(tmp_path, labels, why):
  path = write(tmp_path, "t.tsv",
               "label\tsentence\n0\ta\n1\tb\n0\tc\n1\td\n")
  bind(path, labels=labels)
  with pytest.raises(local_files.MalformedFileError,
                     match=r"t\.tsv:1: it looks like a header row: its label "
                     r"'label' is %s\. Bind local_classification\.header = "
                     r"True" % why):
    local_files.local_classification("train")
  bind(path, header=True, labels=labels)
  assert len(local_files.local_classification("train")) == 4


def test_byte_order_mark_is_not_part_of_the_first_label(tmp_path):
  data = "0\tfirst\n1\tsecond\n".encode("utf-8-sig")
  bind(write(tmp_path, "t.tsv", data))
  got = local_files.local_classification("train")
  assert [g["targets"] for g in got] == [
      ["neg", "pos"][int(line.split("\t")[0])]
      for line in data.decode("utf-8-sig").splitlines()]


def test_free_text_labels_are_not_taken_for_a_header(tmp_path):
  """Dialogue-like targets: every value unique, nothing looks like a header."""
  path = write(tmp_path, "t.tsv", "hello\ta\nhi there\tb\nbye\tc\n")
  bind(path, labels=None)
  got = local_files.local_classification("train")
  assert [g["targets"] for g in got] == ["hello", "hi there", "bye"]


def test_training_checks_the_validation_path_too(tmp_path):
  good = write(tmp_path, "t.tsv", "0\tfine\n")
  typo = str(tmp_path / "dve.tsv")
  assert not os.path.exists(typo)
  bind(good, validation_path=typo)
  with pytest.raises(local_files.MalformedFileError,
                     match=r"local_classification\.validation_path = .*"
                     r"dve\.tsv'?: no such file"):
    local_files.local_classification("train")
  with gin.unlock_config():
    gin.bind_parameter("local_lm.train_path", good)
    gin.bind_parameter("local_lm.validation_path", typo)
  with pytest.raises(local_files.MalformedFileError,
                     match=r"local_lm\.validation_path = .*no such file"):
    local_files.local_lm("train")


def test_label_longer_than_bound_targets_length_fails_when_read(tmp_path,
                                                                caplog):
  """Checked when the file is read, as a row skip_malformed covers."""
  path = write(tmp_path, "news.tsv",
               "Sci/Tech\tchips are fast\nWorld\tpeace talks\n")
  tokens = len(seqio.ByteVocabulary().encode("Sci/Tech")) + 1  # + EOS
  assert tokens == 9
  bind(path, labels=None)
  with gin.unlock_config():
    gin.parse_config(["utils.run.sequence_length = {'inputs': 32, "
                      "'targets': %d}" % (tokens - 1)])
  with pytest.raises(local_files.MalformedFileError,
                     match=r"news\.tsv:1: the label 'Sci/Tech' is 8 tokens, 9 "
                     r"with its EOS, more than utils\.run\.sequence_length"
                     r"\['targets'\] = 8.*to at least 9"):
    local_files.local_classification("train")
  bind(path, labels=None, skip_malformed=True)
  with caplog.at_level(logging.WARNING):
    got = local_files.local_classification("train")
  assert [g["targets"] for g in got] == ["World"]
  assert "skipped 1 malformed rows" in caplog.text
  with gin.unlock_config():
    gin.parse_config(["utils.run.sequence_length = {'inputs': 32, "
                      "'targets': %d}" % tokens])
  assert len(local_files.local_classification("train")) == 2


def test_encoding_errors_name_the_encoding_binding(tmp_path):
  data = b"0\tfine\n1\tcaf\xe9 au lait\n"
  path = write(tmp_path, "t.tsv", data)
  bind(path)
  with pytest.raises(local_files.MalformedFileError,
                     match=r"t\.tsv:2: not valid utf-8 .*bind "
                     r"local_classification\.encoding to it, e\.g\. 'latin-1'"):
    local_files.local_classification("train")
  bind(path, encoding="latin-1")
  got = local_files.local_classification("train")
  assert got[1]["inputs"] == "classify: " + data.decode("latin-1").split(
      "\t")[-1].strip()
  bind(path, encoding="utf9")
  with pytest.raises(local_files.MalformedFileError,
                     match=r"local_classification\.encoding = 'utf9': unknown "
                     r"encoding"):
    local_files.local_classification("train")
  with gin.unlock_config():
    gin.bind_parameter("local_lm.train_path", path)
  with pytest.raises(local_files.MalformedFileError,
                     match=r"t\.tsv:2: not valid utf-8.*local_lm\.encoding"):
    local_files.local_lm("train")


# ---- issue 40: every line accounted for --------------------------------------

@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_any_line_ending_reads_as_lines(tmp_path, ending):
  lines = ["0\tfirst", "1\tsecond", "0\tthird"]
  path = write(tmp_path, "t.tsv", ending.join(lines) + ending)
  bind(path)
  got = local_files.local_classification("train")
  assert [g["inputs"] for g in got] == [
      "classify: " + line.split("\t")[1] for line in lines]
  bind(write(tmp_path, "t.csv", ending.join(
      '%s,"%s"' % tuple(line.split("\t")) for line in lines) + ending),
       file_format="csv")
  assert local_files.local_classification("train") == got
  with gin.unlock_config():
    gin.bind_parameter("local_lm.train_path", path)
  assert [g["targets"] for g in local_files.local_lm("train")] == [
      line.strip() for line in "\n".join(lines).splitlines()]


def test_every_line_is_accounted_for_in_the_log(tmp_path, caplog):
  path = write(tmp_path, "t.tsv", "0\tgood\n\n1\tfine\n7\tbad label\n0\tok\n")
  bind(path, skip_malformed=True)
  with caplog.at_level(logging.INFO):
    got = local_files.local_classification("train")
  assert len(got) == 3
  (record,) = [r for r in caplog.records if "lines read" in r.getMessage()]
  assert record.levelno == logging.WARNING
  assert ("5 lines read, 3 examples made (1 blank lines); skipped 1 malformed "
          "rows (lines 4; first: %s:4: unknown label '7'" % path
          in record.getMessage())
  caplog.clear()
  bind(write(tmp_path, "clean.tsv", "0\tgood\n1\tfine\n"))
  with caplog.at_level(logging.INFO):
    local_files.local_classification("train")
  (record,) = [r for r in caplog.records if "lines read" in r.getMessage()]
  assert record.levelno == logging.INFO
  assert "2 lines read, 2 examples made (0 blank lines)" in record.getMessage()


def test_inputs_longer_than_the_length_are_counted(tmp_path, caplog):
  texts = ["short", "a rather longer text", "the longest text of them all"]
  path = write(tmp_path, "t.tsv", "".join("0\t%s\n" % t for t in texts))
  bind(path)
  with gin.unlock_config():
    gin.parse_config(["utils.run.sequence_length = {'inputs': 24, "
                      "'targets': 8}"])
  with caplog.at_level(logging.INFO):
    local_files.local_classification("train")
  sizes = [len(("classify: " + t).encode()) + 1 for t in texts]  # bytes + EOS
  cut = [n for n in sizes if n > 24]
  assert len(cut) == 2
  (record,) = [r for r in caplog.records if "lines read" in r.getMessage()]
  assert record.levelno == logging.WARNING
  assert ("2 inputs longer than utils.run.sequence_length['inputs'] = 24 "
          "tokens with EOS, cut to it (the longest: %d)" % max(cut)
          in record.getMessage())


def test_a_header_found_again_is_an_error_at_its_line(tmp_path):
  """Two files joined: with labels unbound the first row is still taken for
  a header (its copy is no class), and the copy is an error at its line."""
  path = write(tmp_path, "t.tsv", "label\tsentence\n0\ta\n1\tb\n"
               "label\tsentence\n0\tc\n1\td\n")
  bind(path, labels=None)
  with pytest.raises(local_files.MalformedFileError,
                     match=r"t\.tsv:1: it looks like a header row.*Bind "
                     r"local_classification\.header = True"):
    local_files.local_classification("train")
  bind(path, labels=None, header=True)
  with pytest.raises(local_files.MalformedFileError,
                     match=r"t\.tsv:4: the header row of line 1 again"):
    local_files.local_classification("train")


def test_an_empty_label_is_an_error(tmp_path):
  bind(write(tmp_path, "t.tsv", "a\tfine\n\tno label\nb\tok\n"), labels=None)
  with pytest.raises(local_files.MalformedFileError,
                     match=r"t\.tsv:2: empty label"):
    local_files.local_classification("train")


def test_validation_rows_overlapping_training_rows_are_refused(tmp_path):
  path = write(tmp_path, "t.tsv", "".join("%d\ttext %d\n" % (i % 2, i)
                                         for i in range(10)))
  for train_rows, validation_rows, overlap in [
      ([0, 6], [5, 10], "5-5"), (None, [8, 10], "8-9"), ([0, 8], None, "0-7")]:
    bind(path, validation_path=path, train_rows=train_rows,
         validation_rows=validation_rows)
    for split in ("train", "validation"):
      with pytest.raises(local_files.MalformedFileError,
                         match=r"same file and its examples %s are in both "
                         r"splits" % overlap):
        local_files.local_classification(split)
  bind(path, validation_path=path, train_rows=[0, 8], validation_rows=[8, 10])
  assert [g["inputs"] for g in local_files.local_classification(
      "validation")] == ["classify: text 8", "classify: text 9"]
  with gin.unlock_config():
    gin.bind_parameter("local_lm.train_path", path)
    gin.bind_parameter("local_lm.validation_path", path)
  with pytest.raises(local_files.MalformedFileError,
                     match=r"local_lm.train_path and local_lm.validation_path "
                     r"are the same file"):
    local_files.local_lm("validation")
