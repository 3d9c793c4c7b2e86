"""What ``score`` and ``compare`` share: files into checked inputs, ``--ci``'s value, and
how a value is printed with its interval.

Heavy imports (torch and the metrics) happen inside the functions, so that ``--help``
stays instant.
"""
from __future__ import annotations

import math

import click

__all__ = ["RESAMPLES", "load_inputs", "format_estimate", "format_interval"]


class _Resamples(click.ParamType):
    """``--ci`` alone: each metric's default number of resamples; ``--ci R``: R for all."""

    name = "R"

    def convert(self, value, param, ctx):
        if value is None or value == "auto" or isinstance(value, int):
            if isinstance(value, int) and value < 2:
                self.fail(f"expected an integer >= 2, got {value!r}", param, ctx)
            return value
        try:
            number = int(value)
        except (TypeError, ValueError):
            self.fail(f"expected an integer >= 2, got {value!r}", param, ctx)
        if number < 2:
            self.fail(f"expected an integer >= 2, got {value!r}", param, ctx)
        return number


RESAMPLES = _Resamples()


def load_inputs(latents_path, factors_path, options: dict, device):
    """Read one latents file and the factors file, and check them once.

    ``options`` holds ``latents_key``, ``factors_key`` and ``discrete``. Returns the
    :class:`~disentangle_eval._validation.ScoringInputs` and the factor names (from the
    files, else ``factor_0, factor_1, ...``). Raises ``FileNotFoundError`` for a missing
    file and ``ValueError`` (:class:`DataError`) for data that cannot be scored.
    """
    from disentangle_eval._validation import check_inputs
    from disentangle_eval.io import load_array, load_factor_names

    latents = load_array(latents_path, "latents", options["latents_key"])
    factors = load_array(factors_path, "factors", options["factors_key"])
    given_names = load_factor_names(factors_path, latents_path, n_factors=factors.shape[1])
    inputs = check_inputs(latents, factors, discrete=options["discrete"], device=device,
                          factor_names=given_names, nonnegative_factors=True)
    return inputs, given_names or [f"factor_{i}" for i in range(inputs.n_factors)]


def _number(value, digits: int, signed: bool) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"  # a value the metric leaves undefined (null in JSON)
    return f"{value:{'+' if signed else ''}.{digits}f}"


def format_interval(interval, *, digits: int = 4, signed: bool = False) -> str:
    """``[0.6900, 0.7300]`` from ``[low, high]``."""
    low, high = interval
    return f"[{_number(low, digits, signed)}, {_number(high, digits, signed)}]"


def format_estimate(value, interval=None, *, digits: int = 4, signed: bool = False) -> str:
    """``0.7100`` or, with an interval ``[low, high]``, ``0.7100 [0.6900, 0.7300]``."""
    text = _number(value, digits, signed)
    if interval is not None:
        text += " " + format_interval(interval, digits=digits, signed=signed)
    return text
