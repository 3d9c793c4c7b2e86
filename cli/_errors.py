"""How the commands fail: one line on stderr and a documented exit code, never a traceback.

Exit codes: 0 success, 1 bad data (:class:`BadData`), 2 bad usage (click's
``UsageError``). Set ``DISENTANGLE_EVAL_DEBUG=1`` to see the traceback of an unexpected
error instead of its one line.
"""
from __future__ import annotations

import os

import click

__all__ = ["EXIT_BAD_DATA", "BadData", "OneLineErrors", "Group", "Command"]

EXIT_BAD_DATA = 1
_MAX_MESSAGE = 2000
# How torch reports an allocation it could not make: CPU allocator text, CUDA's own type.
_TORCH_OUT_OF_MEMORY = ("can't allocate memory", "CUDA out of memory")


class BadData(click.ClickException):
    """Data that cannot be used: one line on stderr, exit code 1."""

    exit_code = EXIT_BAD_DATA

    def show(self, file=None) -> None:
        # One line whatever the message holds (a library's multi-line text, user names).
        from disentangle_eval._validation import display_text

        click.echo(f"error: {display_text(self.format_message(), _MAX_MESSAGE)}", err=True)


_OUT_OF_MEMORY = "out of memory; use fewer samples or a machine with more memory"


class OneLineErrors:
    """Mixin for click commands: unexpected failures become one line on stderr."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except MemoryError:
            raise BadData(_OUT_OF_MEMORY) from None
        except Exception as exc:  # noqa: BLE001 - the last line of defence of a CLI
            if os.environ.get("DISENTANGLE_EVAL_DEBUG"):
                raise
            if isinstance(exc, RuntimeError) and any(s in str(exc) for s in _TORCH_OUT_OF_MEMORY):
                raise BadData(_OUT_OF_MEMORY) from None
            raise BadData(f"unexpected {type(exc).__name__}: {exc} (set "
                          "DISENTANGLE_EVAL_DEBUG=1 for the traceback)") from None


class Group(OneLineErrors, click.Group):
    """A command group with one-line errors."""


class Command(OneLineErrors, click.Command):
    """A command with one-line errors."""
