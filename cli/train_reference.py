"""``train-reference``: train a reference model and dump its latents for scoring.

Exit codes: 0 success, 1 bad data, 2 bad usage.
"""
from __future__ import annotations

import click


def _print_models(ctx: click.Context, _param, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from reference_models.models.registry import list_models

    for name in list_models():
        click.echo(name)
    ctx.exit(0)


def _print_datasets(ctx: click.Context, _param, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from reference_models.data.registry import list_datasets

    for info in list_datasets():
        factors = ", ".join(f"{n} {s}" for n, s in zip(info.factor_names, info.factor_sizes))
        click.echo(f"{info.name}: {factors}")
    ctx.exit(0)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--list-models", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_models, help="Print the registered model names and exit.")
@click.option("--list-datasets", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_datasets,
              help="Print every dataset with its factors and sizes and exit.")
@click.argument("model", required=False)
def main(model: str | None) -> None:
    """Train reference MODEL on a dataset (the training command lands with a later issue).

    \b
    Example:
      train-reference --list-models
    """
    raise click.UsageError("training is not available yet; use --list-models or --list-datasets")
