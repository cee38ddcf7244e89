"""The catalogue: every model variant the project ships, named once.

Each variant has one short label (the one tables, sweeps, benchmarks and tests
use), its name in the paper's tables (Tay et al.) or in Narang et al. 2021, and
its gin files under gin/:

  gin           the encoder-decoder model; the same file binds the decoder-only
                LM stack (utils.run.model_type = 'lm')
  encoder_only  the encoder-only classifier of the paper's Table 7, where one
                exists

mesh-tensorflow's own `transformer_layers.Synthesizer` (the authors' release)
is one gin file and a mode; its rows carry the mode as a binding and a
`stock_` prefix on the label of our variant it corresponds to.

  from synth_mtf import variants
  variants.get("R+V").gin   # 'models/synthesizer/random_plus_vanilla.gin'
  synth-mtf variants        # the table
"""

import dataclasses
from typing import Optional, Tuple


@dataclasses.dataclass(frozen=True)
class Variant:
  label: str
  paper: str  # the name in the paper's tables, or what the layer is
  gin: Optional[str]  # encoder-decoder and decoder-only LM
  encoder_only: Optional[str] = None
  bindings: Tuple[str, ...] = ()  # on top of the gin file
  stock: bool = False  # mesh-tensorflow's own layer, not ours

  @property
  def stem(self):
    """The name of its gin file without folder and .gin (e.g. 'random')."""
    return self.gin and self.gin.rsplit("/", 1)[-1][:-len(".gin")]

  def config(self, kind):
    """The gin file of kind 'bi' (encoder-decoder), 'lm' or 'encoder_only', or
    None where the variant has none."""
    if kind not in KINDS:
      raise ValueError("unknown kind %r; choose from %s" % (kind, KINDS))
    return self.encoder_only if kind == "encoder_only" else self.gin

  def gin_file(self, kind="bi"):
    """config(kind), or an error naming the variants that have one."""
    f = self.config(kind)
    if f is None:
      raise ValueError(
          "%s has no %s config; the variants that have one: %s" % (
              self.label, kind, ", ".join(labels(kind))))
    return f


KINDS = ("bi", "lm", "encoder_only")
_SYN_DIR = "models/synthesizer/"
_SYN = _SYN_DIR + "%s.gin"
_ENC = "models/encoder_only/%s.gin"
_STOCK = "transformer_layers.Synthesizer.synthesize_mode = %r"


def _ours(label, stem, encoder_only=False):
  return Variant(label, "Syn(%s)" % label, _SYN % stem,
                 _ENC % stem if encoder_only else None)


def _stock(label, mode):
  return Variant("stock_" + label, "mesh-tensorflow Synthesizer(%s)" % mode,
                 "models/baselines/stock_synthesizer.gin",
                 _ENC % "stock_synthesizer", (_STOCK % mode,), stock=True)


CATALOGUE = (
    Variant("vanilla", "Transformer", "models/baselines/transformer.gin",
            _ENC % "transformer"),
    _ours("R", "random", encoder_only=True),
    _ours("Fix", "fixed_random"),
    _ours("FR", "factorized_random", encoder_only=True),
    _ours("D", "dense", encoder_only=True),
    _ours("FD", "factorized_dense"),
    _ours("R+D", "random_plus_dense"),
    _ours("R+V", "random_plus_vanilla"),
    _ours("D+V", "dense_plus_vanilla"),
    _ours("FR+V", "factorized_random_plus_vanilla", encoder_only=True),
    Variant("Linformer", "Linformer (Wang et al. 2020)", None,
            _ENC % "linformer"),
    Variant("DyConv", "DynamicConv1DLocalAttn (Wu et al. 2019)",
            "models/baselines/dynamic_conv.gin"),
    Variant("LightConv", "LightweightConv1DLocalAttn (Wu et al. 2019)",
            "models/baselines/lightweight_conv.gin"),
    # the release's modes, as Narang et al. 2021 ran them
    _stock("R", "random"),
    _stock("FR", "factorized"),
    _stock("D", "dense_minus"),
    _stock("R+V", "random_plus_alpha"),
    _stock("D+V", "dense_plus_alpha"),
)
_BY_LABEL = {v.label: v for v in CATALOGUE}


def get(label):
  try:
    return _BY_LABEL[label]
  except KeyError:
    raise ValueError("unknown variant %r; choose from %s" % (
        label, ", ".join(_BY_LABEL))) from None


def labels(kind="bi", stock=True):
  """The labels that have a config of `kind`, in catalogue order."""
  return [v.label for v in CATALOGUE
          if v.config(kind) and (stock or not v.stock)]


def synthesizers():
  """Our Synthesizer variants (the files of gin/models/synthesizer/)."""
  return [v for v in CATALOGUE if v.gin and v.gin.startswith(_SYN_DIR)]
