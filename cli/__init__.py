"""Command-line interface (installed as ``disentangle_eval.cli``)."""
