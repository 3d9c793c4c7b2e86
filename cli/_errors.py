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


class BadData(click.ClickException):
    """Data that cannot be used: one line on stderr, exit code 1."""

    exit_code = EXIT_BAD_DATA

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class OneLineErrors:
    """Mixin for click commands: unexpected failures become one line on stderr."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except MemoryError:
            raise BadData("out of memory; use fewer samples or a machine with more "
                          "memory") from None
        except Exception as exc:  # noqa: BLE001 - the last line of defence of a CLI
            if os.environ.get("DISENTANGLE_EVAL_DEBUG"):
                raise
            raise BadData(f"unexpected {type(exc).__name__}: {exc} (set "
                          "DISENTANGLE_EVAL_DEBUG=1 for the traceback)") from None


class Group(OneLineErrors, click.Group):
    """A command group with one-line errors."""


class Command(OneLineErrors, click.Command):
    """A command with one-line errors."""
