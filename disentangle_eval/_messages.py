"""What the metrics say when they refuse data: the error type and safe text of names.

Names of factors and latents come with the data, not from the code: before they appear in a
message or table they go through :func:`display_text`, so that a name cannot break a line
or send escape sequences to a terminal.
"""
from __future__ import annotations

from typing import Sequence

__all__ = ["DataError", "display_text", "factor_label", "factor_name"]

# Longest text a name may show in a message or table (names are data, not prose).
_MAX_DISPLAY = 80


class DataError(ValueError):
    """The data handed to a metric cannot be scored (exit code 1 on the command line)."""


def display_text(text, max_length: int = _MAX_DISPLAY) -> str:
    """``text`` safe to show on a terminal: one line, no control or escape sequences.

    Every non-printable character (newlines, ESC, bidirectional overrides, ...) is shown
    as its Python escape (``\\x1b``, ``\\n``); text longer than ``max_length`` is cut
    with an ellipsis. Printable text, accents included, is unchanged.
    """
    text = str(text)
    if len(text) > max_length:
        text = text[:max_length] + "..."
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def factor_label(i: int, factor_names: Sequence[str] | None) -> str:
    """How messages name factor ``i``: ``column 3``, or ``'size' (column 3)``."""
    if factor_names is None:
        return f"column {i}"
    return f"'{display_text(factor_names[i])}' (column {i})"


def factor_name(i: int, factor_names: Sequence[str] | None) -> str:
    """How warnings name factor ``i`` in a list: ``factor 3``, or its name."""
    return display_text(factor_names[i]) if factor_names is not None else f"factor {i}"
