"""seqio tasks on local files, configured from gin / the CLI alone (no Python).

  synth_mtf_local_classification  a TSV/CSV of label + text columns
  synth_mtf_local_lm              a plain-text file, one document per line
  synth_mtf_personachat           PersonaChat-style dialogue TSV (no TFDS source)

Point them at files with --gin_param bindings, e.g. SST-2 from GLUE:

  --gin_param="MIXTURE_NAME = 'synth_mtf_local_classification'"
  --gin_param="local_classification.train_path = 'data/sst2/train.tsv'"
  --gin_param="local_classification.validation_path = 'data/sst2/dev.tsv'"
  --gin_param="local_classification.header = True"
  --gin_param="local_classification.labels = {'0': 'negative', '1': 'positive'}"

Both use a byte vocabulary, which needs no download. A malformed row (wrong column
count, unknown label, empty text, bytes that are not valid in the encoding) raises
an error naming the file and line, unless local_*.skip_malformed = True, in which
case the rows are skipped and their count is logged.
"""

import csv
import io
import os

from absl import logging
import gin
import seqio
from t5.data import preprocessors as t5_preprocessors
from t5.evaluation import metrics
import tensorflow.compat.v2 as tf

VOCAB = seqio.ByteVocabulary()
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


def _decoded_lines(path, encoding):
  """(line number, text) of each line; undecodable lines give (n, None, error)."""
  with open(path, "rb") as f:
    for n, raw in enumerate(f, start=1):
      try:
        yield n, raw.decode(encoding), None
      except UnicodeDecodeError as e:
        yield n, None, "not valid %s (%s)" % (encoding, e.reason)


class _Rows(object):
  """Collects examples, raising or counting malformed rows."""

  def __init__(self, path, binding, skip_malformed):
    self.path, self.binding, self.skip = path, binding, skip_malformed
    self.examples, self.skipped, self.first_problem = [], 0, None

  def bad(self, line, why):
    msg = "%s:%d: %s" % (self.path, line, why)
    if not self.skip:
      raise MalformedFileError(
          msg + ". Fix the row, or bind %s.skip_malformed = True to skip such "
          "rows." % self.binding)
    self.skipped += 1
    self.first_problem = self.first_problem or msg

  def done(self):
    if self.skipped:
      logging.warning("%s: skipped %d malformed rows of %s (first: %s)",
                      self.binding, self.skipped, self.path, self.first_problem)
    if not self.examples:
      raise MalformedFileError("%s: %s has no usable rows." %
                               (self.binding, self.path))
    return self.examples


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
  path = {"train": train_path, "validation": validation_path}.get(split)
  examples = read_table(path, "local_classification", split, file_format,
                        label_column, text_columns, header, labels,
                        backslash_is_newline, task_prefix, encoding,
                        skip_malformed)
  rows = {"train": train_rows, "validation": validation_rows}.get(split)
  if rows is None:
    return examples
  start, stop = rows
  if not 0 <= start < stop <= len(examples):
    raise MalformedFileError(
        "local_classification.%s_rows = %r is outside the %d examples of %s."
        % (split, list(rows), len(examples), path))
  return examples[start:stop]


def read_table(path, name, split, file_format, label_column, text_columns,
               header, labels, backslash_is_newline, task_prefix, encoding,
               skip_malformed):
  """Rows of a TSV/CSV as examples; `name` is the gin configurable (errors)."""
  _check_path(path, "%s.%s_path" % (name, split))
  if isinstance(labels, (list, tuple)):
    labels = {str(i): label for i, label in enumerate(labels)}
  if file_format not in ("tsv", "csv"):
    raise MalformedFileError("%s.file_format = %r: use 'tsv' or 'csv'."
                             % (name, file_format))
  rows = _Rows(path, name, skip_malformed)
  want = max([label_column] + list(text_columns)) + 1
  lines = _decoded_lines(path, encoding)
  if file_format == "csv":
    lines = _csv_records(lines)
  for n, fields, error in lines:
    if error:
      rows.bad(n, error)
      continue
    if file_format == "tsv":
      fields = fields.rstrip("\r\n").split("\t")
      if fields == [""]:
        continue  # blank line
    if header and n == 1:
      continue
    if len(fields) < want:
      rows.bad(n, "expected at least %d columns, found %d" % (want,
                                                              len(fields)))
      continue
    label = fields[label_column].strip()
    if labels is not None:
      if label not in labels:
        rows.bad(n, "unknown label %r (known: %s)" % (label, sorted(labels)))
        continue
      label = labels[label]
    text = " ".join(fields[i].strip() for i in text_columns).strip()
    if backslash_is_newline:
      text = " ".join(text.replace("\\", " ").split())
    if not text:
      rows.bad(n, "empty text")
      continue
    rows.examples.append({"inputs": "%s: %s" % (task_prefix, text),
                          "targets": label})
  return rows.done()


def _csv_records(lines):
  """Parse decoded lines as CSV records, keeping the starting line number."""
  buf, start = [], None
  for n, text, error in lines:
    if error:
      yield n, None, error
      continue
    if not buf:
      start = n
    buf.append(text)
    joined = "".join(buf)
    if joined.count('"') % 2:  # a quoted field continues on the next line
      continue
    buf = []
    if not joined.strip():
      continue
    try:
      fields = next(csv.reader(io.StringIO(joined)))
    except csv.Error as e:
      yield start, None, "bad CSV (%s)" % e
      continue
    yield start, fields, None
  if buf:
    yield start, None, "unterminated quoted field"


@gin.configurable
def local_dialogue(split, train_path=None, validation_path=None,
                   encoding="utf-8", skip_malformed=False):
  """PersonaChat-style dialogue (paper Table 3), TSV: context<TAB>response.

  context holds the persona sentences and the dialogue history so far, in any
  textual form (we suggest "persona: ... | history: ... "); response is the
  next utterance. inputs = "dialogue: <context>", targets = response.
  """
  path = {"train": train_path, "validation": validation_path}.get(split)
  return read_table(path, "local_dialogue", split, "tsv", 1, (0,), False, None,
                    False, "dialogue", encoding, skip_malformed)


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
  path = {"train": train_path, "validation": validation_path}.get(split)
  _check_path(path, "local_lm.%s_path" % split)
  rows = _Rows(path, "local_lm", skip_malformed)
  for n, text, error in _decoded_lines(path, encoding):
    if error:
      rows.bad(n, error)
    elif text.strip():
      rows.examples.append({"targets": text.strip()})
  return rows.done()


FEATURES = {"inputs": seqio.Feature(VOCAB, add_eos=True),
            "targets": seqio.Feature(VOCAB, add_eos=True)}


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
            "bytes + 1, or use shorter label texts." % n))
    with tf.control_dependencies([fits]):
      return dict(ex, targets=tf.identity(ex["targets"]))

  return dataset.map(check)


def _register(name, reader, keys, metric_fns, split_long=False,
              checks=()):
  """A seqio task reading `reader(split)` (a gin-configured function, so its
  bindings are read when the data is, after the CLI has parsed gin)."""
  if name in seqio.TaskRegistry.names():
    return

  def dataset_fn(split, shuffle_files=False, seed=None):
    del shuffle_files, seed
    examples = reader(split)
    return tf.data.Dataset.from_tensor_slices(
        {k: [e[k] for e in examples] for k in keys})

  split = [t5_preprocessors.split_tokens_to_targets_length] if split_long else []
  seqio.TaskRegistry.add(
      name,
      source=seqio.FunctionDataSource(dataset_fn, splits=SPLITS),
      preprocessors=([seqio.preprocessors.tokenize] + split + list(checks) +
                     [seqio.preprocessors.append_eos_after_trim]),
      output_features={k: FEATURES[k] for k in keys},
      metric_fns=metric_fns)


_register("synth_mtf_local_classification", local_classification,
          ("inputs", "targets"), [metrics.accuracy], checks=[labels_fit])
_register("synth_mtf_personachat", local_dialogue, ("inputs", "targets"),
          [metrics.bleu, metrics.rouge])
_register("synth_mtf_local_lm", local_lm, ("targets",), [], split_long=True)
