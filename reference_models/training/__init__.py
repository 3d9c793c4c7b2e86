"""Training, evaluation and figures of the reference models.

``run_folder`` (the run's spec, files and checkpoints), ``memory`` (what a run needs),
``schedules``, ``loop`` (``train``: the paper's Algorithm 1 with exact resume),
``evaluate`` (latent dump and scores), ``figures`` and ``table`` (results of many runs).
See ``docs/training.md``.
"""
