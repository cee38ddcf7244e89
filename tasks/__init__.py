"""seqio tasks of synth-mtf (installed as synth_mtf.tasks)."""
from synth_mtf.tasks import generated  # noqa: F401
