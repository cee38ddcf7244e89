"""seqio tasks of synth-mtf (installed as synth_mtf.tasks)."""
