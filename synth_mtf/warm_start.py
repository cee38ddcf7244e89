"""Warm start a Synthesizer from a stock T5 checkpoint (gin/warm_start/).

T5's attention lives under .../SelfAttention/{q,k,v,o} and its relative
position bias under .../SelfAttention/relative_attention_bias; ours under
.../SynthesizerAttention/{v,o}, .../SynthesizerAttention/dot_product/{q,k} and
.../SynthesizerAttention/relative_attention_bias. `t5_name` maps the one onto
the other (Adafactor's slots too), for mesh-tensorflow's
init_checkpoint_variable_mapping. What T5 never had (Random's R, Dense's W1/W2,
the mixture's alpha) keeps its name, is absent from the checkpoint and starts
fresh.
"""

import re

import gin

_OURS = re.compile(r"/SynthesizerAttention/(?:dot_product/)?"
                   r"(q|k|v|o|relative_attention_bias)(?=$|_slot_)")


@gin.configurable
def t5_name(name):
  """Graph variable name -> its name in a stock T5 checkpoint."""
  return _OURS.sub(r"/SelfAttention/\1", name)
