"""synth-mtf: Synthesizer attention (Tay et al. 2021) for Mesh TensorFlow / T5.

Importing this package (e.g. `t5_mesh_transformer --module_import=synth_mtf`)
registers the layers with gin, puts the package's gin/ directory on gin's search
path (so `--gin_file=models/synthesizer/random.gin` resolves) and imports T5's own
tasks and mixtures, because --module_import replaces its default
(t5.data.mixtures) and `en_mix`/GLUE would otherwise vanish from the registry.
"""

import os
import sys
import warnings

# mesh-tensorflow imports pkg_resources, which setuptools < 81 (pinned for it)
# announces as deprecated on every start: noise for our users.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated")

import gin  # pylint: disable=g-import-not-at-top,wrong-import-position

from synth_mtf import attention  # noqa: F401  (registers gin configurables)
from synth_mtf import baselines  # noqa: F401
from synth_mtf import reproducible
from synth_mtf import synthesizers  # noqa: F401
from synth_mtf.attention import SynthesizerAttention  # noqa: F401
from synth_mtf.baselines import LinformerAttention  # noqa: F401
from synth_mtf.synthesizers import (  # noqa: F401
    Dense, DotProduct, FactorizedDense, FactorizedRandom, FixedRandom, Random)


def _gin_dir():
  here = os.path.dirname(os.path.abspath(__file__))
  # installed: synth_mtf/gin; source checkout / editable install: <repo>/gin
  for d in (os.path.join(here, "gin"), os.path.join(here, os.pardir, "gin")):
    if os.path.isdir(os.path.join(d, "models", "synthesizer")):
      return os.path.normpath(d)
  raise ImportError("synth_mtf: cannot find its gin/ directory next to %s; "
                    "reinstall the package (pip install -e .)." % here)


GIN_DIR = _gin_dir()
reproducible.single_thread_if_requested(sys.argv)
gin.add_config_file_search_path(GIN_DIR)


def _import_registries():
  # T5's tasks/mixtures first, then ours (ours may refer to T5's).
  import t5.data.mixtures  # noqa: F401  pylint: disable=g-import-not-at-top
  import synth_mtf.tasks  # noqa: F401  pylint: disable=g-import-not-at-top


_import_registries()
