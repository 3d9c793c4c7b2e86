"""The metrics the command line (and anything else that scores by name) can run.

One entry per metric family: the function, the keyword arguments it takes from the
shared scoring settings, and the matrices it writes. The ``score`` command (and
``compare``) iterate over this table; adding a metric is one entry here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ._dci import dci_from_inputs
from ._infomec import infomec_from_inputs
from ._irs import irs_from_inputs
from ._mig import mig_from_inputs
from ._modularity import modularity_explicitness_from_inputs
from ._resampling import Resampling
from ._results import MetricResult
from ._sap import sap_from_inputs
from ._validation import ScoringInputs
from .plotting import plot_importance, plot_matrix, plot_nmi

__all__ = ["MetricSpec", "METRICS", "DEFAULT_METRICS", "SETTING_NAMES", "run_metric"]

# Keyword arguments that a metric may take from the shared settings of a scoring run.
SETTING_NAMES = ("n_neighbors", "active", "predictor", "backend", "max_train_rows",
                 "max_test_rows", "split", "train_fraction", "seed", "device", "progress",
                 "factor_names")
# What is not recorded as the metric's own settings in a report.
_RUN_SETTINGS = ("seed", "device", "progress", "factor_names")


@dataclass(frozen=True)
class MetricSpec:
    """How to run one metric family by name.

    Attributes
    ----------
    name : str
        Command-line name (``--metrics``) and key of the metric's object in reports.
    compute : callable
        ``compute(inputs, **options) -> MetricResult`` on inputs checked once by
        :func:`~disentangle_eval._validation.check_inputs` (the ``*_from_inputs``
        function of the metric's module).
    options : tuple of str
        Names from :data:`SETTING_NAMES` that ``compute`` takes as keyword arguments.
    matrices : tuple of str
        Result attributes written as ``<attribute>.npy`` by ``score --out``.
    heatmap : callable or None
        ``heatmap(result, factor_names, path)`` draws the metric's main matrix as PNG.
    heatmap_file : str or None
        File name of that PNG.
    resampling : Resampling or None
        How rows may be resampled for confidence intervals (``None``: half-sampling,
        or the bootstrap within the train/test split when the metric takes ``split``;
        see :func:`disentangle_eval._uncertainty.resampling_plan`).
    """

    name: str
    compute: Callable[..., MetricResult]
    options: tuple[str, ...]
    matrices: tuple[str, ...]
    heatmap: Callable[..., object] | None = None
    heatmap_file: str | None = None
    resampling: Resampling | None = None

    def settings(self, shared: dict) -> dict:
        """The metric's own settings out of ``shared`` (for the report)."""
        return {k: shared[k] for k in self.options if k not in _RUN_SETTINGS and k in shared}

    def output_files(self) -> list[str]:
        files = [f"{m}.npy" for m in self.matrices]
        return files + ([self.heatmap_file] if self.heatmap_file else [])


def run_metric(spec: MetricSpec, inputs: ScoringInputs, shared: dict) -> MetricResult:
    """Call ``spec.compute`` on checked ``inputs`` with the options it takes from ``shared``."""
    return spec.compute(inputs, **{k: shared[k] for k in spec.options if k in shared})


def _nmi_heatmap(result, factor_names, path):
    return plot_nmi(result.nmi, factor_names, result.active_latents, path=path,
                    title=f"NMI (InfoM {result.infom:.2f}, InfoC {result.infoc:.2f})")


def _importance_heatmap(result, factor_names, path):
    return plot_importance(result.importance, factor_names, path=path,
                           title=f"DCI importance (D {result.disentanglement:.2f}, "
                                 f"C {result.completeness:.2f})")


def _mutual_information_heatmap(result, factor_names, path):
    mi = result.mutual_information
    names = (list(factor_names) if factor_names is not None
             else [f"s{j}" for j in range(mi.shape[1])])
    return plot_matrix(mi, row_labels=[f"z{i}" for i in range(mi.shape[0])], col_labels=names,
                       title="Binned mutual information (nats)", row_title="latent",
                       col_title="factor", path=path)


# MIG and Modularity share the binned MI matrix (the same rows and bins): either writes it.
_SPLIT_OPTIONS = ("split", "train_fraction", "seed", "factor_names")

METRICS: dict[str, MetricSpec] = {spec.name: spec for spec in (
    MetricSpec("dci", dci_from_inputs, options=("predictor", "backend", "max_train_rows",
                                                "max_test_rows", "split", "train_fraction",
                                                "seed", "device", "progress", "factor_names"),
               matrices=("importance",), heatmap=_importance_heatmap,
               heatmap_file="importance.png",
               # Trees take a repeated row as a weight; refits are costly, hence 20. DCI
               # depends on the number of rows by design: no bias correction.
               resampling=Resampling(discrete="bootstrap", continuous="bootstrap",
                                     within_split=True, default_resamples=20)),
    MetricSpec("infomec", infomec_from_inputs, options=("n_neighbors", "active", "seed"),
               matrices=("nmi",), heatmap=_nmi_heatmap, heatmap_file="nmi.png",
               # Plug-in MI and the logistic fits take repeated rows; the nearest-neighbour
               # estimator does not (a repeat is a neighbour at distance 0).
               resampling=Resampling(discrete="bootstrap", continuous="half",
                                     bias_correction=True)),
    MetricSpec("mig", mig_from_inputs, options=_SPLIT_OPTIONS,
               matrices=("mutual_information",), heatmap=_mutual_information_heatmap,
               heatmap_file="mutual_information.png"),
    # MIG, SAP, Modularity/Explicitness and IRS fit or bin training rows: the default plan,
    # the bootstrap within the split without bias correction (MIG's gap of two plug-in
    # MIs is nearly unbiased; correcting it only added noise in the coverage runs).
    MetricSpec("sap", sap_from_inputs, options=_SPLIT_OPTIONS, matrices=("score_matrix",)),
    MetricSpec("modularity", modularity_explicitness_from_inputs, options=_SPLIT_OPTIONS,
               matrices=("mutual_information", "explicitness_per_factor"),
               heatmap=_mutual_information_heatmap, heatmap_file="mutual_information.png"),
    MetricSpec("irs", irs_from_inputs, options=_SPLIT_OPTIONS, matrices=("irs_matrix",)),
)}
DEFAULT_METRICS = ("dci", "infomec")
