"""InfoMEC: information-based modularity, explicitness and compactness.

Layout convention used everywhere in this module: the NMI matrix has **rows = factors,
columns = latents**, shape (n_factors, n_latents).
"""
from __future__ import annotations

import math
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from ._infoe import check_infoe_size, predictive_information_from_inputs
from ._logistic import check_fit_options
from ._nmi import nmi_matrix
from ._results import MetricResult
from ._validation import ScoringInputs, check_inputs, check_latents

__all__ = [
    "InfoMECResult",
    "infomec",
    "infomec_from_inputs",
    "normalized_mutual_information",
    "active_latents",
    "modularity_compactness",
]

ACTIVE_RULES = ("range", "iqr")


@dataclass(frozen=True)
class InfoMECResult(MetricResult):
    """InfoMEC scores of one representation.

    Attributes
    ----------
    infom, infoe, infoc : float
        InfoM (modularity), InfoE (explicitness) and InfoC (compactness), in [0, 1].
    nmi : ndarray of shape (n_factors, n_latents)
        Normalised mutual information I(s_i; z_j) / H(s_i); rows = factors, columns = latents.
    active_latents : ndarray of shape (n_latents,), bool
        Latents that InfoM and InfoC are computed over.
    infoe_per_factor : ndarray of shape (n_factors,)
        Normalised predictive V-information of each factor; ``infoe`` is their mean.
    discrete : bool
        Whether the latents were scored as discrete codes.
    n_neighbors : int
        Neighbours of the continuous MI estimator (unused for discrete latents).
    active_rule : str
        ``"range"`` or ``"iqr"``.
    seed : int
        Seed of the estimator's jitter.
    device : str
        Device the computation ran on.
    notes : tuple of str
        Where a score had to be given a defined value because the reference formula is
        undefined (division by zero), and whether a fit hit its iteration cap.
    """

    infom: float
    infoe: float
    infoc: float
    nmi: np.ndarray
    active_latents: np.ndarray
    infoe_per_factor: np.ndarray
    discrete: bool
    n_neighbors: int
    active_rule: str
    seed: int
    device: str
    notes: tuple[str, ...] = field(default=())

    HEADLINE = ("infom", "infoe", "infoc")
    LAYOUTS = {"nmi": "rows = factors, columns = latents"}


def infomec(latents, factors, *, discrete: bool | None = None, n_neighbors: int = 3,
            active: str = "range", device=None, seed: int = 0, max_iter: int = 500,
            tol: float = 1e-4) -> InfoMECResult:
    """InfoMEC scores of ``latents`` against ground-truth ``factors``.

    Follows the FactorQVAE evaluation code (itself adapted from the QLAE authors'
    InfoMEC): NMI from the plug-in estimator for discrete latents and from the
    nearest-neighbour continuous-discrete estimator for continuous latents, InfoM and InfoC
    over the active latents, InfoE from unregularised multinomial logistic regression.

    Parameters
    ----------
    latents : array-like or torch.Tensor of shape (n_samples, n_latents)
        The representation, one row per sample (float codes or integer code indices).
    factors : array-like or torch.Tensor of shape (n_samples, n_factors)
        Integer ground-truth factor labels (any integers; relabelled internally).
    discrete : bool or None, default=None
        Treat latents as discrete codes. ``None``: integer dtype -> discrete,
        floating dtype -> continuous.
    n_neighbors : int, default=3
        k of the continuous-discrete MI estimator (3 in the FactorQVAE code, 10 in the QLAE
        authors' standalone InfoMEC).
    active : {"range", "iqr"}, default="range"
        Rule for active latents. ``"range"``: range > 0 (discrete) or range > max range / 20
        (continuous), as FactorQVAE. ``"iqr"``: inter-quartile range > 0.1 (discrete) or
        > max IQR / 10 (continuous), as the tripod code.
    device : str, torch.device or None, default=None
        ``None``: CUDA when available, else CPU.
    seed : int, default=0
        Seed of the 1e-10 jitter the continuous estimator adds to break ties.
    max_iter, tol : int, float
        L-BFGS cap and gradient tolerance of the InfoE fits (the reference: 500, 1e-4).

    Returns
    -------
    InfoMECResult

    References
    ----------
    .. [1] K. Hsu, W. Dorrell, J. Whittington, J. Wu, C. Finn. "Disentanglement via Latent
       Quantization", NeurIPS 2023 (InfoMEC).
    .. [2] G. Baykal, M. Kandemir, G. Unal. "Disentanglement with Factor Quantized Variational
       Autoencoders", Neurocomputing (FactorQVAE evaluation protocol).
    .. [3] B. C. Ross. "Mutual Information between Discrete and Continuous Data Sets",
       PLoS ONE 9(2), 2014.

    Examples
    --------
    >>> import numpy as np
    >>> from disentangle_eval import infomec
    >>> rng = np.random.default_rng(0)
    >>> factors = rng.integers(0, 5, size=(2000, 3))
    >>> latents = factors + 0.1 * rng.standard_normal((2000, 3))
    >>> result = infomec(latents, factors, device="cpu")
    >>> round(result.infom, 1), round(result.infoc, 1)
    (1.0, 1.0)
    """
    _check_infomec_options(active, n_neighbors, seed, max_iter, tol)
    inputs = check_inputs(latents, factors, discrete=discrete, device=device)
    return infomec_from_inputs(inputs, n_neighbors=n_neighbors, active=active, seed=seed,
                               max_iter=max_iter, tol=tol)


def _check_infomec_options(active, n_neighbors, seed, max_iter, tol) -> None:
    if active not in ACTIVE_RULES:
        raise ValueError(f"active must be one of {ACTIVE_RULES}, got {active!r}")
    if (isinstance(n_neighbors, bool) or not isinstance(n_neighbors, (int, np.integer))
            or n_neighbors < 1):
        raise ValueError(f"n_neighbors must be a positive integer, got {n_neighbors!r}")
    if (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
            or not 0 <= seed < 2**63):
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    check_fit_options(max_iter=max_iter, tol=tol)


def infomec_from_inputs(inputs: ScoringInputs, *, n_neighbors: int = 3, active: str = "range",
                        seed: int = 0, max_iter: int = 500, tol: float = 1e-4) -> InfoMECResult:
    """:func:`infomec` of inputs already checked by
    :func:`~disentangle_eval._validation.check_inputs` (their ``discrete`` and device are
    used). Parameters are those of :func:`infomec`.
    """
    _check_infomec_options(active, n_neighbors, seed, max_iter, tol)
    check_infoe_size(inputs)  # before the NMI: refuse what cannot fit without waiting
    (nmi, nmi_notes), (per_factor, fit_notes) = _nmi_and_infoe(
        inputs, n_neighbors=int(n_neighbors), seed=int(seed), max_iter=max_iter, tol=tol)
    active_mask = _active_mask(inputs.raw_latents, discrete=inputs.discrete, rule=active)
    nmi_np = nmi.cpu().numpy()
    active_np = active_mask.cpu().numpy()
    infom, infoc, notes = modularity_compactness(nmi_np, active_np)
    notes = nmi_notes + notes + fit_notes
    for note in notes:
        warnings.warn(note, RuntimeWarning, stacklevel=2)
    return InfoMECResult(
        infom=infom, infoe=float(per_factor.mean()), infoc=infoc, nmi=nmi_np,
        active_latents=active_np, infoe_per_factor=per_factor, discrete=inputs.discrete,
        n_neighbors=int(n_neighbors), active_rule=active, seed=int(seed),
        device=str(inputs.latents.device), notes=notes)


def _nmi_and_infoe(inputs: ScoringInputs, *, n_neighbors: int, seed: int, max_iter: int,
                   tol: float):
    """The NMI matrix and InfoE, side by side on a CPU with two or more torch threads.

    Both are sequences of many small tensor operations, which two threads share badly
    (each operation is split, and the threads meet after it); the two computations are
    independent, so each gets half of the threads instead. The results are those of
    running them one after the other.
    """
    threads = torch.get_num_threads()
    if inputs.device.type != "cpu" or threads < 2:
        return (nmi_matrix(inputs, n_neighbors=n_neighbors, seed=seed),
                predictive_information_from_inputs(inputs, max_iter=max_iter, tol=tol))
    stop = threading.Event()

    def nmi_job():
        torch.set_num_threads(max(1, threads // 2))
        return nmi_matrix(inputs, n_neighbors=n_neighbors, seed=seed, stop=stop)

    pool = ThreadPoolExecutor(max_workers=1)
    try:
        future = pool.submit(nmi_job)
        torch.set_num_threads(threads - threads // 2)
        infoe = predictive_information_from_inputs(inputs, max_iter=max_iter, tol=tol)
        return future.result(), infoe  # an interruptible wait
    except BaseException:
        stop.set()  # the NMI ends after its current latent
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(threads)  # set_num_threads in a worker also sets the default


def normalized_mutual_information(latents, factors, *, discrete: bool | None = None,
                                  n_neighbors: int = 3, device=None, seed: int = 0) -> np.ndarray:
    """NMI matrix I(s_i; z_j) / H(s_i), shape (n_factors, n_latents).

    Parameters are those of :func:`infomec`.
    """
    _check_infomec_options("range", n_neighbors, seed, None, None)
    inputs = check_inputs(latents, factors, discrete=discrete, device=device)
    return nmi_matrix(inputs, n_neighbors=int(n_neighbors), seed=int(seed))[0].cpu().numpy()


def active_latents(latents, *, discrete: bool | None = None, rule: str = "range") -> np.ndarray:
    """Boolean mask (n_latents,) of the latents InfoM and InfoC are computed over.

    See ``active`` in :func:`infomec`.
    """
    if rule not in ACTIVE_RULES:
        raise ValueError(f"rule must be one of {ACTIVE_RULES}, got {rule!r}")
    array, is_discrete = check_latents(latents, discrete=discrete)
    raw = torch.as_tensor(array.astype(np.float64))
    return _active_mask(raw, discrete=is_discrete, rule=rule).numpy()


def modularity_compactness(nmi: np.ndarray, active: np.ndarray) -> tuple[float, float, tuple]:
    """InfoM and InfoC from an NMI matrix (rows = factors, columns = latents).

    Exactly the paper's formulas over the active latents where they are defined. Where
    the reference divides by zero, a defined value is returned and a note says so:

    - a latent (column) or factor (row) whose NMI is all zero has no preferred partner;
      its max/sum ratio is taken as that of the uniform distribution, so it adds 0 to the
      normalised score;
    - with a single active latent InfoC is 1 (every factor is trivially captured by one
      latent); with a single factor InfoM is 1 (no latent can mix factors); with no
      active latent InfoM and InfoC are 0 (as the tripod code does).

    Returns
    -------
    infom, infoc : float
    notes : tuple of str
    """
    nmi = np.asarray(nmi, dtype=np.float64)
    active = np.asarray(active, dtype=bool)
    n_factors = nmi.shape[0]
    pruned = nmi[:, active]
    n_active = pruned.shape[1]
    notes: list[str] = []
    if n_active == 0:
        notes.append("no active latent: InfoM and InfoC are undefined and reported as 0")
        return 0.0, 0.0, tuple(notes)

    column_sums = pruned.sum(axis=0)
    zero_columns = column_sums <= 0
    column_ratio = np.where(zero_columns, 1.0 / n_factors,
                            pruned.max(axis=0) / np.where(zero_columns, 1.0, column_sums))
    if zero_columns.any():
        idx = np.flatnonzero(active)[zero_columns].tolist()
        notes.append(f"active latent(s) {idx} have zero NMI with every factor: InfoM counts "
                     "them as uninformative (uniform), where the reference gives NaN")
    if n_factors == 1:
        notes.append("a single factor: InfoM is undefined (the reference divides by zero) "
                     "and reported as 1")
        infom = 1.0
    else:
        infom = float((column_ratio.mean() - 1 / n_factors) / (1 - 1 / n_factors))

    row_sums = pruned.sum(axis=1)
    zero_rows = row_sums <= 0
    row_ratio = np.where(zero_rows, 1.0 / n_active,
                         pruned.max(axis=1) / np.where(zero_rows, 1.0, row_sums))
    if zero_rows.any():
        notes.append(f"factor(s) {np.flatnonzero(zero_rows).tolist()} have zero NMI with "
                     "every active latent: InfoC counts them as uncaptured (uniform), where "
                     "the reference gives NaN")
    if n_active == 1:
        notes.append("a single active latent: InfoC is undefined (the reference divides by "
                     "zero) and reported as 1")
        infoc = 1.0
    else:
        infoc = float((row_ratio.mean() - 1 / n_active) / (1 - 1 / n_active))
    return infom, infoc, tuple(notes)


# --------------------------------------------------------------------------------------
# Active latents


def _quantile_columns(x: torch.Tensor, q: float) -> torch.Tensor:
    """numpy's default (linear) quantile of each column."""
    s = torch.sort(x, dim=0).values
    pos = q * (x.shape[0] - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, x.shape[0] - 1)
    return s[lo] + (pos - lo) * (s[hi] - s[lo])


def _active_mask(raw: torch.Tensor, *, discrete: bool, rule: str) -> torch.Tensor:
    # Spreads are compared on the latents times one power of two (exact), so that ranges
    # of values near the float64 limit do not overflow; absolute thresholds scale along.
    _, exponent = torch.frexp(raw.abs().amax())
    scaled = torch.ldexp(raw, -exponent)
    if rule == "range":
        spread = scaled.amax(dim=0) - scaled.amin(dim=0)
        return spread > 0 if discrete else spread > spread.max() / 20
    spread = _quantile_columns(scaled, 0.75) - _quantile_columns(scaled, 0.25)
    if discrete:
        return spread > torch.ldexp(torch.tensor(0.1, dtype=raw.dtype, device=raw.device),
                                    -exponent)
    return spread > spread.max() / 10
