"""The built-in trainer's parts, one concept per module: ``data`` (dataset layouts streamed from disk and
their checks), ``recipe`` (the paper's augmentation and learning-rate schedule), ``checkpoint`` (a
trial's state at the end of every epoch) and ``distributed`` (one trial as N data-parallel processes).
The training loop that joins them is ``dfseg.search.trainer``."""
