"""``disentangle-eval compare A B --factors F``: is A better than B on the same rows?

The command takes the options of ``score`` that concern scoring as the same parameter
objects (help, defaults and checks cannot drift apart; a test checks that every scoring
option of ``score`` is here) and is registered on the main group by ``cli/main.py``
through :func:`make_compare_command`.
"""
from __future__ import annotations

import os
import warnings

import click

from ._errors import BadData, Command
from ._scoring import format_estimate, format_interval, load_inputs

__all__ = ["make_compare_command"]

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as score
_MAX_MESSAGE = 2000
# Parameters of ``score`` that ``compare`` takes as they are.
SHARED_PARAMETERS = ("factors_path", "latents_key", "factors_key", "metrics", "discrete",
                     "n_neighbors", "active_rule", "dci_predictor", "dci_backend",
                     "dci_max_train_rows", "split", "train_fraction", "device", "seed", "ci",
                     "as_json")

HELP = """Compare two representations A and B of the same rows against --factors.

\b
Examples:
  disentangle-eval compare model_a.npz model_b.npz --factors factors.npz
  disentangle-eval compare a.npy b.npy --factors y.npy --metrics infomec --ci 200 --json

Row i of A, of B and of --factors must describe the same sample. Both are scored on all
rows and on the same resamples of the rows (paired: replicate r of A and of B see the
same rows and seed), which gives, for every headline value, A, B, A - B, the 95%
interval of A - B and the two-sided p-value of no difference. --ci R sets the number of
paired resamples (default: 100, 20 for DCI). Options are those of `score`.
Exit codes: 0 success, 1 bad data, 2 bad usage, 130 interrupted (Ctrl-C).
"""


def make_compare_command(score: click.Command) -> click.Command:
    """The ``compare`` command, with ``score``'s scoring options."""
    by_name = {param.name: param for param in score.params}
    params = [click.Argument(["latents_a"], metavar="A",
                             type=click.Path(dir_okay=False, exists=True)),
              click.Argument(["latents_b"], metavar="B",
                             type=click.Path(dir_okay=False, exists=True))]
    params += [by_name[name] for name in SHARED_PARAMETERS]
    return Command("compare", callback=_compare, params=params, help=HELP,
                   short_help="Compare two representations of the same rows (paired).")


def _compare(latents_a, latents_b, factors_path, latents_key, factors_key, metrics, discrete,
             n_neighbors, active_rule, dci_predictor, dci_backend, dci_max_train_rows, split,
             train_fraction, device, seed, ci, as_json):
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from disentangle_eval._results import strict_json
    from disentangle_eval._validation import display_text, resolve_device

    options = {"latents_key": latents_key, "factors_key": factors_key, "metrics": metrics,
               "discrete": discrete, "n_neighbors": n_neighbors, "active": active_rule,
               "predictor": dci_predictor, "backend": dci_backend,
               "max_train_rows": dci_max_train_rows, "split": split,
               "train_fraction": train_fraction, "seed": seed, "ci": ci}
    try:
        device_obj = resolve_device(device)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        report = _compute(latents_a, latents_b, factors_path, options, device_obj)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
    except FileNotFoundError as exc:
        raise click.UsageError(display_text(exc, _MAX_MESSAGE)) from None
    except ValueError as exc:  # DataError and the metrics' own checks on the data
        raise BadData(display_text(exc, _MAX_MESSAGE)) from None
    click.echo(strict_json(report) if as_json else _format_comparison(report))
    for message in report["warnings"]:
        click.echo(f"warning: {display_text(message, _MAX_MESSAGE)}", err=True)


def _compute(latents_a, latents_b, factors_path, options, device) -> dict:
    """Load and check both sides once, compare them, build the report."""
    from disentangle_eval._registry import METRICS, SETTING_NAMES
    from disentangle_eval._uncertainty import compare_from_inputs
    from disentangle_eval._validation import display_text
    from disentangle_eval.environment import environment_info

    inputs_a, factor_names = load_inputs(latents_a, factors_path, options, device)
    # Checked against the same factors, so B has A's rows.
    inputs_b, _ = load_inputs(latents_b, factors_path, options, device)
    shared = {**{k: v for k, v in options.items() if k in SETTING_NAMES}, "device": device,
              "progress": True, "factor_names": [display_text(n) for n in factor_names]}
    metrics, ci = options["metrics"], options["ci"]
    with warnings.catch_warnings(record=True) as recorded:
        warnings.simplefilter("always")
        comparison = compare_from_inputs(inputs_a, inputs_b, metrics, shared,
                                         n_resamples=None if ci in (None, "auto") else ci,
                                         seed=options["seed"], progress=True)
    sides = comparison.to_dict()
    for side, path, inputs in (("a", latents_a, inputs_a), ("b", latents_b, inputs_b)):
        sides[side] = {"latents": str(path), "n_latents": inputs.n_latents,
                       "latents_discrete": inputs.discrete, **sides[side]}
    settings = {"metrics": list(metrics), "seed": options["seed"], "device": str(device),
                **{name: METRICS[name].settings(shared) for name in metrics},
                "ci": {"level": 0.95, "interval": "t on the resampling standard error", "paired": True,
                       **{name: found.settings()
                          for name, found in comparison.intervals_a.items()}}}
    return {"inputs": {"factors": str(factors_path), "n_samples": inputs_a.n_samples,
                       "n_factors": inputs_a.n_factors, "factor_names": factor_names},
            "settings": settings, **sides,
            "warnings": sorted({str(w.message) for w in recorded if not issubclass(
                w.category, (DeprecationWarning, FutureWarning))}),
            "environment": environment_info(device)}


def _format_p(p) -> str:
    if p is None:
        return "n/a"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def _format_comparison(report: dict) -> str:
    from disentangle_eval._validation import display_text

    inputs, settings = report["inputs"], report["settings"]
    sides = [f"{label} = {display_text(report[side]['latents'])} "
             f"({report[side]['n_latents']} latents, "
             f"{'discrete' if report[side]['latents_discrete'] else 'continuous'})"
             for side, label in (("a", "A"), ("b", "B"))]
    resamples = ", ".join(f"{name} {settings['ci'][name]['n_resamples']} "
                          f"({settings['ci'][name]['method']})" for name in settings["metrics"])
    lines = [f"{inputs['n_samples']} samples, {inputs['n_factors']} factors; {sides[0]}; "
             f"{sides[1]}", f"paired resamples: {resamples}; device {settings['device']}", ""]
    rows = [(key, format_estimate(m["a"]), format_estimate(m["b"]),
             format_estimate(m["difference"], signed=True),
             format_interval(m["ci95"], signed=True),
             _format_p(m["p_value"])) for key, m in report["metrics"].items()]
    header = ("", "A", "B", "A - B", "95% CI of A - B", "p")
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        lines.append("  ".join([row[0].ljust(widths[0])]
                               + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]))
    return "\n".join(lines)
