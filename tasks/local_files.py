"""seqio tasks on local files, configured from gin / the CLI alone (no Python).

  synth_mtf_local_classification  a TSV/CSV of label + text columns
  synth_mtf_local_lm              a plain-text file, one document per line
  synth_mtf_local_span_corruption the same file, T5's span-corruption objective
                                  (pretraining, as c4_v220_span_corruption)
  synth_mtf_personachat           PersonaChat-style dialogue TSV (no TFDS source)

Point them at files with --gin_param bindings, e.g. SST-2 from GLUE:

  --gin_param="MIXTURE_NAME = 'synth_mtf_local_classification'"
  --gin_param="local_classification.train_path = 'data/sst2/train.tsv'"
  --gin_param="local_classification.validation_path = 'data/sst2/dev.tsv'"
  --gin_param="local_classification.header = True"
  --gin_param="local_classification.labels = {'0': 'negative', '1': 'positive'}"

They share one vocabulary: bytes by default (no download, no model file), or a
SentencePiece model of your own (T5's: gs://t5-data/vocabs/cc_all.32000/
sentencepiece.model) with

  --gin_param="local_vocabulary.sentencepiece_model = 'path/to/spm.model'"

Small models trained from scratch learn little from one label token per example
in bytes (measured: SST-2 stays at chance for 2000 steps in bytes, reaches 78% by
then in 2000 word pieces; bench/quality.py). A malformed row (wrong column
count, unknown or empty label, empty text, bytes that are not valid in the
encoding, a label longer than the targets length, the header again) raises an
error naming the file and line, unless local_*.skip_malformed = True, in which
case exactly those rows are skipped. Every file's lines are accounted for in
the log (_Account). CSV is read as Python's csv module reads it.
"""

import codecs
import collections
import csv
import os
import re

from absl import logging
import gin
import seqio
from t5.data import preprocessors as t5_preprocessors
from t5.evaluation import metrics
import tensorflow.compat.v2 as tf

from synth_mtf.tasks.features import features
# the vocabulary lives in vocabulary.py; these names stay importable here
from synth_mtf.tasks.vocabulary import local_vocabulary  # noqa: F401
from synth_mtf.tasks.vocabulary import train_sentencepiece  # noqa: F401
from synth_mtf.tasks.vocabulary import VOCAB

SPLITS = ("train", "validation")


class MalformedFileError(ValueError):
  """A local data file is missing, empty, or has a malformed row."""


def _check_path(path, binding):
  if not path:
    raise MalformedFileError(
        "%s is not set: bind it to a file, e.g. --gin_param=\"%s = "
        "'/path/to/file'\"." % (binding, binding))
  if not os.path.isfile(path):
    raise MalformedFileError("%s = %r: no such file. Fix the path." %
                             (binding, path))
  if os.path.getsize(path) == 0:
    raise MalformedFileError("%s = %r: the file is empty." % (binding, path))


def _split_path(name, split, train_path, validation_path, rows=False):
  """The split's file. Training checks the validation file too, so a wrong
  path fails now rather than at evaluation, after training. One file for
  both splits needs rows (local_classification's *_rows) to part it."""
  path = {"train": train_path, "validation": validation_path}.get(split)
  _check_path(path, "%s.%s_path" % (name, split))
  if split == "train" and validation_path:
    _check_path(validation_path, "%s.validation_path" % name)
  if not rows and train_path and validation_path and os.path.realpath(
      train_path) == os.path.realpath(validation_path):
    raise MalformedFileError(
        "%s.train_path and %s.validation_path are the same file, %s: the "
        "validation would score training examples. Bind validation_path to "
        "another file." % (name, name, validation_path))
  return path


def _decoded_lines(path, encoding, name):
  """(line number, text, error) of each line, whichever its ending (\n, \r\n
  or a bare \r; text keeps it, as csv wants); an undecodable line has an
  error and its text decoded with replacement characters."""
  try:
    codecs.lookup(encoding)
  except LookupError:
    raise MalformedFileError(
        "%s.encoding = %r: unknown encoding. Bind it to a Python codec name, "
        "e.g. 'utf-8' or 'latin-1'." % (name, encoding)) from None
  with open(path, "rb") as f:
    raws = re.findall(rb"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$", f.read())
  for n, raw in enumerate(raws, start=1):
    try:
      text = raw.decode(encoding)
    except UnicodeDecodeError as e:
      yield n, raw.decode(encoding, "replace"), (
          "not valid %s (%s); if the file has another encoding, bind "
          "%s.encoding to it, e.g. 'latin-1'" % (encoding, e.reason, name))
      continue
    # a byte order mark is not part of the first row's label
    yield n, text.lstrip("\ufeff") if n == 1 else text, None


class _Account(object):
  """Every line of a file accounted for: the examples made from it, the rows
  skipped (or raised) with their lines, blank lines, a header, and the
  examples T5 will cut to the bound sequence length."""

  def __init__(self, path, binding, skip_malformed, lines, split_up=()):
    self.path, self.binding, self.skip = path, binding, skip_malformed
    self.lines, self.split_up = lines, split_up  # features split, never cut
    self.examples, self.skipped, self.first_problem = [], [], None
    self.blank = sum(1 for _, text, _ in lines if not text.strip())
    self.header = 0

  def bad(self, line, why, last=None):
    """A malformed row on lines line..last (one CSV row may span several)."""
    where = "%d" % line if last in (None, line) else "%d-%d" % (line, last)
    msg = "%s:%s: %s" % (self.path, where, why)
    if not self.skip:
      raise MalformedFileError(
          msg + ". Fix the row, or bind %s.skip_malformed = True to skip such "
          "rows." % self.binding)
    self.skipped.append(where)
    self.first_problem = self.first_problem or msg

  def done(self):
    if not self.examples:
      raise MalformedFileError("%s: %s has no usable rows." %
                               (self.binding, self.path))
    notes = []
    if self.skipped:
      notes.append("skipped %d malformed rows (lines %s%s; first: %s)" % (
          len(self.skipped), ", ".join(self.skipped[:20]),
          ", ..." if len(self.skipped) > 20 else "", self.first_problem))
    for key, length in sorted(_bound_lengths().items()):
      cut = [n for n in (len(VOCAB.encode(e[key])) + 1 for e in self.examples
                         if key in e and key not in self.split_up)
             if n > length]
      if cut:  # T5 trims them to the length, EOS kept
        notes.append("%d %s longer than utils.run.sequence_length[%r] = %d "
                     "tokens with EOS, cut to it (the longest: %d)" % (
                         len(cut), key, key, length, max(cut)))
    made = len(self.examples)
    # lines neither an example, nor the header, nor blank (a text file's
    # documents are its non-blank lines): rows skipped, or spanning lines
    unexplained = len(self.lines) - made - self.header - self.blank
    logging.log(
        logging.WARNING if notes or unexplained or (
            self.blank and not self.split_up) else logging.INFO,
        "%s: %s: %d lines read, %d examples made (%d blank lines%s)%s",
        self.binding, self.path, len(self.lines), made, self.blank,
        ", 1 header" if self.header else "",
        "".join("; " + n for n in notes))
    return self.examples


def _bound_lengths():
  """utils.run.sequence_length's numbers, where gin binds them, else {} (then
  labels_fit, in the pipeline, is the only check of the labels)."""
  try:
    lengths = gin.query_parameter("utils.run.sequence_length")
  except ValueError:  # utils.run not imported, or nothing bound
    return {}
  return {k: n for k, n in (lengths or {}).items()
          if isinstance(n, int)} if isinstance(lengths, dict) else {}


@gin.configurable
def local_classification(split,
                         train_path=None,
                         validation_path=None,
                         file_format="tsv",
                         label_column=0,
                         text_columns=(1,),
                         header=False,
                         labels=None,
                         backslash_is_newline=False,
                         task_prefix="classify",
                         encoding="utf-8",
                         skip_malformed=False,
                         train_rows=None,
                         validation_rows=None):
  """Read one split of a TSV/CSV classification file into examples.

  Args:
    split: "train" or "validation".
    train_path, validation_path: the files.
    file_format: "tsv" (tab-separated, no quoting) or "csv" (comma, quoted).
    label_column: index of the label column.
    text_columns: indices of text columns, joined with a space (AG News: (1, 2)
      for title and description).
    header: True if the first row is a header to skip.
    labels: dict {value in the file: label text}, or a list of label texts
      (value i -> labels[i]); None keeps the values as they are. A value not in
      it is a malformed row.
    backslash_is_newline: replace "\\" by a space (AG News marks newlines so).
    task_prefix: inputs are "<task_prefix>: <text>".
    encoding: the files' text encoding.
    skip_malformed: skip malformed rows (counted in the log) instead of raising.
    train_rows, validation_rows: optional [start, stop) over the file's
      examples, to split one file in two (AG News: train_rows = [0, 6600],
      validation_rows = [6600, 7600] with both paths on the same file).
  Returns:
    a list of {"inputs": str, "targets": str}.
  """
  path = _split_path("local_classification", split, train_path,
                     validation_path, rows=True)
  examples = read_table(
      path, "local_classification", split, file_format=file_format,
      label_column=label_column, text_columns=text_columns, header=header,
      labels=labels, backslash_is_newline=backslash_is_newline,
      task_prefix=task_prefix, encoding=encoding,
      skip_malformed=skip_malformed,
      targets_length=_bound_lengths().get("targets"))
  ranges = {"train": train_rows, "validation": validation_rows}
  for name, rows in ranges.items():
    if rows is not None and not 0 <= rows[0] < rows[1] <= len(examples):
      raise MalformedFileError(
          "local_classification.%s_rows = %r is outside the %d examples of "
          "%s." % (name, list(rows), len(examples), path))
  if validation_path and os.path.realpath(train_path or "") == (
      os.path.realpath(validation_path)):
    (a, b), (c, d) = [r or (0, len(examples)) for r in ranges.values()]
    if max(a, c) < min(b, d):
      raise MalformedFileError(
          "local_classification: train_path and validation_path are the same "
          "file and its examples %d-%d are in both splits (train_rows = %r, "
          "validation_rows = %r): the validation would score training "
          "examples. Bind the two to disjoint ranges, e.g. train_rows = "
          "[0, %d], validation_rows = [%d, %d]." % (
              max(a, c), min(b, d) - 1, train_rows, validation_rows,
              len(examples) * 9 // 10, len(examples) * 9 // 10, len(examples)))
  rows = ranges.get(split)
  return examples if rows is None else examples[rows[0]:rows[1]]


def read_table(path, name, split, *, file_format, label_column, text_columns,
               header, labels, backslash_is_newline, task_prefix, encoding,
               skip_malformed, targets_length=None):
  """Rows of a TSV/CSV as examples; `name` is the gin configurable (errors).

  targets_length: when known, a label that with its EOS does not fit is a
  malformed row here, before training (labels_fit guards the pipeline too).
  """
  _check_path(path, "%s.%s_path" % (name, split))
  if isinstance(labels, (list, tuple)):
    labels = {str(i): label for i, label in enumerate(labels)}
  if file_format not in ("tsv", "csv"):
    raise MalformedFileError("%s.file_format = %r: use 'tsv' or 'csv'."
                             % (name, file_format))
  sizes = {}
  want = max([label_column] + list(text_columns)) + 1
  lines = list(_decoded_lines(path, encoding, name))
  rows = _Account(path, name, skip_malformed, lines)
  records = list(_tsv_records(lines) if file_format == "tsv" else
                 _csv_records(lines))
  if not records:
    return rows.done()
  spans = [(first, last) for first, last, _, _ in records if last > first]
  if spans:  # legal CSV, but also what an unclosed quote looks like
    logging.warning(
        "%s: %d rows of %s span several lines (a quoted field holds a line "
        "break), the first on lines %d-%d; if that is not meant, an unclosed "
        "quote there merged rows", name, len(spans), path, *spans[0])
  # A row with another column count than most has a separator inside a field
  # (or lacks one): taking its columns by index would cut or shift its text.
  counts = collections.Counter(len(f) for _, _, f, _ in records if f)
  usual = counts.most_common(1)[0][0] if counts else None
  looks_like_header = _check_header(records, header, labels, label_column,
                                    path, name)
  # the header (bound or looked like) found again: files concatenated
  head = records[0] if header or looks_like_header else None
  if header:
    records = records[1:]
    rows.header = head[1] - head[0] + 1
  for index, (first, last, fields, error) in enumerate(records):
    if error:
      rows.bad(first, error, last)
      continue
    if index == 0 and looks_like_header:
      rows.bad(first, looks_like_header)
      continue
    if head and fields == head[2] and first != head[0]:
      rows.bad(first, "the header row of line %d again (files joined?): "
               "delete this line" % head[0], last)
      continue
    if len(fields) < want:
      rows.bad(first, "expected at least %d columns, found %d" % (want,
                                                                  len(fields)),
               last)
      continue
    if len(fields) != usual:
      rows.bad(first, "%d columns where most rows have %d: %s"
               % (len(fields), usual, _column_hint(file_format,
                                                   len(fields) > usual)), last)
      continue
    label = fields[label_column].strip()
    if not label:
      rows.bad(first, "empty label", last)
      continue
    if labels is not None:
      if label not in labels:
        rows.bad(first, "unknown label %r (known: %s)" % (label,
                                                          sorted(labels)),
                 last)
        continue
      label = labels[label]
    if targets_length is not None:
      if label not in sizes:  # in the bound vocabulary's tokens, once a label
        sizes[label] = len(VOCAB.encode(label))
      size = sizes[label]
      if size + 1 > targets_length:
        rows.bad(first, "the label %r is %d tokens, %d with its EOS, more than "
                 "utils.run.sequence_length['targets'] = %d: it would be cut "
                 "and never match its class. Bind the targets length (and "
                 "Bitransformer.decode.max_decode_length) to at least %d, or "
                 "%s.labels to shorter label texts" % (
                     label, size, size + 1, targets_length, size + 1, name),
                 last)
        continue
    text = " ".join(fields[i].strip() for i in text_columns).strip()
    if backslash_is_newline:
      text = " ".join(text.replace("\\", " ").split())
    if not text:
      rows.bad(first, "empty text", last)
      continue
    rows.examples.append({"inputs": "%s: %s" % (task_prefix, text),
                          "targets": label})
  return rows.done()


def _column_hint(file_format, more):
  if file_format == "tsv":
    return ("a tab inside the text? Replace it by a space" if more else
            "a missing tab?")
  return ("a comma inside an unquoted field? Quote that field" if more else
          "a missing comma?")


def _check_header(records, header, labels, label_column, path, name):
  """Catch a header setting that does not fit the file. header = True on a
  file without one drops an example: raise. header = False on a file with one
  trains the header as a class: return why its first row is malformed."""
  # a copy of the first row later (a header again) is no evidence of a class
  values = [f[label_column].strip() if f and len(f) > label_column and
            f != records[0][2] else None for _, _, f, _ in records[1:]]
  head = records[0][2]
  first = head[label_column].strip() if head and len(head) > label_column \
      else None
  rest = [v for v in values if v is not None]
  if first is None or not rest:
    return None
  if labels is not None:
    known, rest_known = set(labels), all(v in labels for v in rest)
  else:  # the values of the other rows, each seen more than once (classes)
    counts = collections.Counter(rest)
    known, rest_known = set(counts), min(counts.values()) > 1
  if header and first in known:
    raise MalformedFileError(
        "%s:%d: %s.header = True skips this row as a header, but it looks like "
        "an example: its label %r is a known label. Bind %s.header = False."
        % (path, records[0][0], name, first, name))
  if not header and first not in known and rest_known:
    return ("it looks like a header row: its label %r is %s. Bind %s.header = "
            "True, or, if it is an example, bind %s.labels to all the classes"
            % (first, "not a known label while every other row's is"
               if labels is not None else "in no other row while every other "
               "row's label is in several", name, name))
  return None


def _tsv_records(lines):
  """(first line, last line, fields, error) of each non-blank line."""
  for n, text, error in lines:
    fields = text.rstrip("\r\n").split("\t")
    if fields != [""]:
      yield n, n, None if error else fields, error


def _texts(lines, ended):
  """The lines' texts; `ended` is set once the reader asks past the last."""
  for _, text, _ in lines:
    yield text
  ended.append(True)


def _csv_records(lines):
  """(first line, last line, fields, error) of each record, as Python's csv
  module reads it. A quote that never closes would take the rest of the file
  into one field: its line alone is reported, and reading resumes after it."""
  start = 0  # index in lines where the current reader began
  while start < len(lines):
    ended = []
    reader = csv.reader(_texts(lines[start:], ended))
    first = start  # index of the next record's first line
    try:
      for fields in reader:
        end = start + reader.line_num  # one past the record's last line
        if ended:  # the reader hit the end of the file inside a quoted field
          yield first + 1, first + 1, None, (
              "unterminated quoted field: the quote opened on this line "
              "never closes")
          start = first + 1
          break
        errors = [e for _, _, e in lines[first:end] if e]
        if fields:  # [] is a blank line
          yield (first + 1, end, None if errors else fields,
                 errors[0] if errors else None)
        first = end
      else:
        return
    except csv.Error as e:
      yield first + 1, first + 1, None, "bad CSV (%s)" % e
      start = first + 1


@gin.configurable
def local_dialogue(split, train_path=None, validation_path=None,
                   encoding="utf-8", skip_malformed=False):
  """PersonaChat-style dialogue (paper Table 3), TSV: context<TAB>response.

  context holds the persona sentences and the dialogue history so far, in any
  textual form (we suggest "persona: ... | history: ... "); response is the
  next utterance. inputs = "dialogue: <context>", targets = response.
  """
  path = _split_path("local_dialogue", split, train_path, validation_path)
  return read_table(
      path, "local_dialogue", split, file_format="tsv", label_column=1,
      text_columns=(0,), header=False, labels=None,
      backslash_is_newline=False, task_prefix="dialogue", encoding=encoding,
      skip_malformed=skip_malformed)


@gin.configurable
def local_lm(split,
             train_path=None,
             validation_path=None,
             encoding="utf-8",
             skip_malformed=False):
  """Read one split of a plain-text file: each non-blank line is one document.

  Documents longer than the targets length are split into several examples
  (t5's split_tokens_to_targets_length), never truncated.
  """
  path = _split_path("local_lm", split, train_path, validation_path)
  lines = list(_decoded_lines(path, encoding, "local_lm"))
  rows = _Account(path, "local_lm", skip_malformed, lines,
                  split_up=("targets",))
  for n, text, error in lines:
    if error:
      rows.bad(n, error)
    elif text.strip():
      rows.examples.append({"targets": text.strip()})
  return rows.done()


FEATURES = features(VOCAB)


def labels_fit(dataset, sequence_length=None):
  """Fail instead of trimming a label: T5 cuts targets to their length (keeping
  EOS), and a cut label ("Sci/Tec") never matches its class ("Sci/Tech") at
  evaluation, which silently scores that class as always wrong."""
  n = (sequence_length or {}).get("targets")
  if n is None:
    return dataset

  def check(ex):
    fits = tf.debugging.assert_less(
        tf.size(ex["targets"]), n, message=(
            "local_classification: a label with its EOS is longer than "
            "utils.run.sequence_length['targets']=%d and would be cut, so it "
            "could never match its class. Raise the targets length (and "
            "Bitransformer.decode.max_decode_length) to the longest label in "
            "tokens + 1, or use shorter label texts." % n))
    with tf.control_dependencies([fits]):
      return dict(ex, targets=tf.identity(ex["targets"]))

  return dataset.map(check)


def _register(name, reader, keys, metric_fns, steps=(), features=None):
  """A seqio task reading `reader(split)` (a gin-configured function, so its
  bindings are read when the data is, after the CLI has parsed gin): the
  reader's `keys`, tokenized, then `steps`, then EOS; `features` (default:
  keys) are the outputs."""
  if name in seqio.TaskRegistry.names():
    return

  def dataset_fn(split, shuffle_files=False, seed=None):
    del shuffle_files, seed
    examples = reader(split)
    return tf.data.Dataset.from_tensor_slices(
        {k: [e[k] for e in examples] for k in keys})

  seqio.TaskRegistry.add(
      name,
      source=seqio.FunctionDataSource(dataset_fn, splits=SPLITS),
      preprocessors=([seqio.preprocessors.tokenize] + list(steps) +
                     [seqio.preprocessors.append_eos_after_trim]),
      output_features={k: FEATURES[k] for k in (features or keys)},
      metric_fns=metric_fns)


_register("synth_mtf_local_classification", local_classification,
          ("inputs", "targets"), [metrics.accuracy], steps=[labels_fit])
_register("synth_mtf_personachat", local_dialogue, ("inputs", "targets"),
          [metrics.bleu, metrics.rouge])
_register("synth_mtf_local_lm", local_lm, ("targets",), [],
          steps=[t5_preprocessors.split_tokens_to_targets_length])
# T5's pretraining objective (as c4_v220_span_corruption) on local_lm's file
_register("synth_mtf_local_span_corruption", local_lm, ("targets",), [],
          steps=[t5_preprocessors.span_corruption],
          features=("inputs", "targets"))
