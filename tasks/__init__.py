"""seqio tasks of synth-mtf (installed as synth_mtf.tasks)."""

from synth_mtf.tasks import generated  # noqa: F401
from synth_mtf.tasks import local_files  # noqa: F401
from synth_mtf.tasks import tfds_tasks  # noqa: F401
