"""What every metric result shares: a JSON-ready dictionary and its headline values.

Each result is a frozen dataclass that names its headline values (``HEADLINE``, the
numbers a paper's table reports) and the layout of its matrices (``LAYOUTS``, stated once
here so that the command line, ``metrics.json`` of a training run and the Python API say
the same thing).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import fields
from typing import ClassVar

import numpy as np

__all__ = ["MetricResult", "json_ready", "strict_json"]


def json_ready(value):
    """``value`` with arrays as nested lists, tuples as lists and numpy scalars as Python.

    Non-finite floats become ``None``: the toolkit's JSON is strict (no NaN/Infinity).
    Paths become strings.
    """
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def strict_json(value, *, indent: int | None = 2) -> str:
    """``value`` as strict JSON text (:func:`json_ready` first; NaN/Infinity never appear).

    Raises ``ValueError`` for a non-finite float that :func:`json_ready` did not reach
    and ``TypeError`` for a value JSON cannot hold, instead of writing invalid JSON.
    """
    return json.dumps(json_ready(value), indent=indent, allow_nan=False)


class MetricResult:
    """Mixin of the metric result dataclasses.

    Subclasses set ``HEADLINE`` (names of the headline float attributes, in table order)
    and ``LAYOUTS`` (matrix attribute -> ``"rows = ..., columns = ..."``).
    """

    HEADLINE: ClassVar[tuple[str, ...]] = ()
    LAYOUTS: ClassVar[dict[str, str]] = {}

    def headline(self) -> dict[str, float]:
        """The headline values, ``{name: value}`` in table order."""
        return {name: float(getattr(self, name)) for name in self.HEADLINE}

    def to_dict(self) -> dict:
        """JSON-ready dictionary of every field, plus ``<matrix>_layout`` for each matrix."""
        out = {f.name: json_ready(getattr(self, f.name)) for f in fields(self)}
        for name, layout in self.LAYOUTS.items():
            out[f"{name}_layout"] = layout
        return out
