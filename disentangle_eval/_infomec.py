"""InfoMEC: information-based modularity, explicitness and compactness.

Layout convention used everywhere in this module: the NMI matrix has **rows = factors,
columns = latents**, shape (n_factors, n_latents).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from ._logistic import fit_multinomial_logistic, log_loss, one_hot_design
from ._results import MetricResult
from ._validation import ScoringInputs, check_inputs

__all__ = [
    "InfoMECResult",
    "infomec",
    "infomec_from_inputs",
    "normalized_mutual_information",
    "active_latents",
    "modularity_compactness",
    "predictive_information",
]

ACTIVE_RULES = ("range", "iqr")

# Bytes of float64 scratch the nearest-neighbour estimator may hold at once.
_KNN_MEMORY_BUDGET = 256 * 2**20


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
    _check_infomec_options(active, n_neighbors)
    inputs = check_inputs(latents, factors, discrete=discrete, device=device)
    return infomec_from_inputs(inputs, n_neighbors=n_neighbors, active=active, seed=seed,
                               max_iter=max_iter, tol=tol)


def _check_infomec_options(active, n_neighbors) -> None:
    if active not in ACTIVE_RULES:
        raise ValueError(f"active must be one of {ACTIVE_RULES}, got {active!r}")
    if not isinstance(n_neighbors, (int, np.integer)) or n_neighbors < 1:
        raise ValueError(f"n_neighbors must be a positive integer, got {n_neighbors!r}")


def infomec_from_inputs(inputs: ScoringInputs, *, n_neighbors: int = 3, active: str = "range",
                        seed: int = 0, max_iter: int = 500, tol: float = 1e-4) -> InfoMECResult:
    """:func:`infomec` of inputs already checked by
    :func:`~disentangle_eval._validation.check_inputs` (their ``discrete`` and device are
    used). Parameters are those of :func:`infomec`.
    """
    _check_infomec_options(active, n_neighbors)
    nmi = _nmi(inputs, n_neighbors=int(n_neighbors), seed=seed)
    active_mask = _active_mask(inputs.raw_latents, discrete=inputs.discrete, rule=active)
    nmi_np = nmi.cpu().numpy()
    active_np = active_mask.cpu().numpy()
    infom, infoc, notes = modularity_compactness(nmi_np, active_np)
    per_factor, fit_notes = _predictive_information(inputs, max_iter=max_iter, tol=tol)
    notes = notes + fit_notes
    for note in notes:
        warnings.warn(note, RuntimeWarning, stacklevel=2)
    return InfoMECResult(
        infom=infom, infoe=float(per_factor.mean()), infoc=infoc, nmi=nmi_np,
        active_latents=active_np, infoe_per_factor=per_factor, discrete=inputs.discrete,
        n_neighbors=int(n_neighbors), active_rule=active, seed=int(seed),
        device=str(inputs.latents.device), notes=notes)


def normalized_mutual_information(latents, factors, *, discrete: bool | None = None,
                                  n_neighbors: int = 3, device=None, seed: int = 0) -> np.ndarray:
    """NMI matrix I(s_i; z_j) / H(s_i), shape (n_factors, n_latents).

    Parameters are those of :func:`infomec`.
    """
    inputs = check_inputs(latents, factors, discrete=discrete, device=device)
    return _nmi(inputs, n_neighbors=n_neighbors, seed=seed).cpu().numpy()


def active_latents(latents, *, discrete: bool | None = None, rule: str = "range") -> np.ndarray:
    """Boolean mask (n_latents,) of the latents InfoM and InfoC are computed over.

    See ``active`` in :func:`infomec`.
    """
    if rule not in ACTIVE_RULES:
        raise ValueError(f"rule must be one of {ACTIVE_RULES}, got {rule!r}")
    from ._validation import check_latents

    array, is_discrete = check_latents(latents, discrete=discrete)
    raw = torch.as_tensor(array.astype(np.float64))
    return _active_mask(raw, discrete=is_discrete, rule=rule).numpy()


def predictive_information(latents, factors, *, discrete: bool | None = None, device=None,
                           max_iter: int = 500, tol: float = 1e-4) -> np.ndarray:
    """Normalised predictive V-information of each factor, shape (n_factors,).

    ``(ln K_i - CE_i) / ln K_i`` with ``CE_i`` the in-sample log-loss of an unregularised
    multinomial logistic regression fitted with balanced class weights, and ``ln K_i`` the
    loss of the best input-free predictor under balanced weights (the uniform one).
    """
    inputs = check_inputs(latents, factors, discrete=discrete, device=device)
    return _predictive_information(inputs, max_iter=max_iter, tol=tol)[0]


def modularity_compactness(nmi: np.ndarray, active: np.ndarray) -> tuple[float, float, tuple]:
    """InfoM and InfoC from an NMI matrix (rows = factors, columns = latents).

    Exactly the paper's formulas over the active latents where they are defined. Where
    the reference divides by zero, a defined value is returned and a note says so:

    - a latent (column) or factor (row) whose NMI is all zero has no preferred partner;
      its max/sum ratio is taken as that of the uniform distribution, so it adds 0 to the
      normalised score;
    - with a single active latent InfoC is 1 (every factor is trivially captured by one
      latent); with no active latent InfoM and InfoC are 0 (as the tripod code does).

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
# NMI


def _entropy_from_counts(counts: torch.Tensor, n: int) -> torch.Tensor:
    p = counts.to(torch.float64) / n
    return -(torch.where(p > 0, p * torch.log(p), torch.zeros_like(p))).sum(dim=-1)


def _factor_entropies(factors: torch.Tensor, sizes) -> torch.Tensor:
    n, n_factors = factors.shape
    counts = torch.zeros(n_factors, max(sizes), dtype=torch.int64, device=factors.device)
    counts.scatter_add_(1, factors.T, torch.ones_like(factors.T))
    return _entropy_from_counts(counts, n)


def _nmi(inputs: ScoringInputs, *, n_neighbors: int, seed: int) -> torch.Tensor:
    if inputs.discrete:
        mi = _plugin_mutual_information(inputs.latents, inputs.factors, inputs.factor_sizes)
    else:
        mi = _knn_mutual_information(inputs.latents, inputs.factors, inputs.factor_sizes,
                                     n_neighbors=n_neighbors, seed=seed)
    return mi / _factor_entropies(inputs.factors, inputs.factor_sizes)[:, None]


def _plugin_mutual_information(codes: torch.Tensor, factors: torch.Tensor, sizes) -> torch.Tensor:
    """Plug-in MI (nats) of every (factor, latent) pair from contingency tables."""
    n, n_latents = codes.shape
    n_factors = factors.shape[1]
    latent_sizes = codes.max(dim=0).values + 1
    kz = int(latent_sizes.max())
    ky = max(sizes)
    # One bincount over all pairs: joint cell index offset by the pair's block.
    pair = torch.arange(n_factors * n_latents, device=codes.device).reshape(n_factors, n_latents)
    cell = (pair[:, :, None] * (ky * kz) + factors.T[:, None, :] * kz + codes.T[None, :, :])
    joint = torch.bincount(cell.reshape(-1), minlength=n_factors * n_latents * ky * kz)
    joint = joint.reshape(n_factors, n_latents, ky, kz).to(torch.float64)
    p_joint = joint / n
    p_factor = p_joint.sum(dim=3, keepdim=True)
    p_latent = p_joint.sum(dim=2, keepdim=True)
    ratio = p_joint / (p_factor * p_latent).clamp(min=torch.finfo(torch.float64).tiny)
    terms = torch.where(p_joint > 0, p_joint * torch.log(ratio.clamp(min=1e-300)),
                        torch.zeros_like(p_joint))
    return terms.sum(dim=(2, 3)).clamp(min=0)


def _standardize(x: torch.Tensor) -> torch.Tensor:
    """Per-column (x - mean) / std with std = 1 for constant columns (StandardScaler)."""
    std = x.std(dim=0, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return (x - x.mean(dim=0)) / std


def _knn_mutual_information(latents: torch.Tensor, factors: torch.Tensor, sizes, *,
                            n_neighbors: int, seed: int) -> torch.Tensor:
    """Continuous-discrete MI (nats) of every (factor, latent) pair, shape (F, d).

    The estimator of Ross (2014) as in ``sklearn.feature_selection.mutual_info_classif``:
    per-column standardisation, a 1e-10 jitter, the distance to the k-th nearest
    same-label neighbour, the count of all samples within that radius, and the digamma
    formula, clipped at 0. In one dimension the k nearest same-label neighbours lie among
    the k left and k right neighbours in (label, value) order, and the radius count is a
    difference of two ``searchsorted`` positions, so every pair is done with sorts.
    """
    n, n_latents = latents.shape
    n_factors = factors.shape[1]
    # StandardScaler, then the scaling mutual_info_classif applies itself (a no-op up to
    # rounding for standardised columns; kept for constant columns and fidelity).
    x = _standardize(latents)
    x = x / torch.where(x.std(dim=0, unbiased=False) > 0, x.std(dim=0, unbiased=False),
                        torch.ones(n_latents, dtype=x.dtype, device=x.device))
    jitter_scale = 1e-10 * torch.clamp(x.abs().mean(dim=0), min=1.0)

    generator = torch.Generator(device=latents.device)
    generator.manual_seed(int(seed))
    pair_factor = torch.arange(n_factors, device=latents.device).repeat_interleave(n_latents)
    pair_latent = torch.arange(n_latents, device=latents.device).repeat(n_factors)
    n_pairs = n_factors * n_latents
    per_pair_bytes = n * 8 * (2 * n_neighbors + 12)
    chunk = max(1, min(n_pairs, _KNN_MEMORY_BUDGET // per_pair_bytes))
    out = torch.empty(n_pairs, dtype=torch.float64, device=latents.device)
    for start in range(0, n_pairs, chunk):
        stop = min(n_pairs, start + chunk)
        lat_idx, fac_idx = pair_latent[start:stop], pair_factor[start:stop]
        noise = torch.randn((stop - start, n), generator=generator, dtype=torch.float64,
                            device=latents.device)
        values = x.T[lat_idx] + jitter_scale[lat_idx, None] * noise
        out[start:stop] = _ksg_pairs(values, factors.T[fac_idx], max(sizes), n_neighbors)
    return out.reshape(n_factors, n_latents)


def _ksg_pairs(values: torch.Tensor, labels: torch.Tensor, n_labels: int,
               n_neighbors: int) -> torch.Tensor:
    """Ross's estimator for a batch of 1-D (value, label) problems, rows independent."""
    n_pairs, n = values.shape
    device = values.device
    ones = torch.ones_like(labels)
    label_counts = torch.zeros(n_pairs, n_labels, dtype=torch.int64, device=device)
    label_counts.scatter_add_(1, labels, ones)

    # (label, value) order: stable sort by value, then stable sort by label.
    by_value = torch.argsort(values, dim=1, stable=True)
    by_label = torch.argsort(labels.gather(1, by_value), dim=1, stable=True)
    order = by_value.gather(1, by_label)
    sorted_values = values.gather(1, order)
    sorted_labels = labels.gather(1, order)
    count = label_counts.gather(1, sorted_labels)
    keep = count > 1  # samples alone in their label are ignored, as sklearn does
    k = torch.clamp(count - 1, max=n_neighbors)

    inf = torch.tensor(float("inf"), dtype=torch.float64, device=device)
    candidates = torch.full((n_pairs, n, 2 * n_neighbors), float("inf"), dtype=torch.float64,
                            device=device)
    for t in range(1, min(n_neighbors, n - 1) + 1):
        gap = sorted_values[:, t:] - sorted_values[:, :-t]
        same = sorted_labels[:, t:] == sorted_labels[:, :-t]
        gap = torch.where(same, gap, inf)
        candidates[:, t:, t - 1] = gap          # neighbour t places to the left
        candidates[:, :-t, n_neighbors + t - 1] = gap  # neighbour t places to the right
    candidates, _ = torch.sort(candidates, dim=2)
    kth = candidates.gather(2, (k.clamp(min=1) - 1).unsqueeze(-1)).squeeze(-1)
    radius = torch.nextafter(kth, torch.zeros_like(kth))

    # Count every kept sample within the radius (the sample itself included).
    pool = torch.sort(torch.where(keep, sorted_values, inf), dim=1).values
    lo = torch.searchsorted(pool, sorted_values - radius, right=False)
    hi = torch.searchsorted(pool, sorted_values + radius, right=True)
    lo, hi = _exact_window(pool, sorted_values, radius, lo, hi)
    m = (hi - lo).clamp(min=1)

    keep_f = keep.to(torch.float64)
    n_keep = keep_f.sum(dim=1)
    safe_n = n_keep.clamp(min=1)

    def masked_mean_digamma(a):
        return (torch.special.digamma(a.to(torch.float64).clamp(min=1)) * keep_f).sum(dim=1) / safe_n

    mi = (torch.special.digamma(n_keep.clamp(min=1)) + masked_mean_digamma(k)
          - masked_mean_digamma(count) - masked_mean_digamma(m))
    return torch.where(n_keep > 0, mi.clamp(min=0), torch.zeros_like(mi))


def _exact_window(pool, centers, radius, lo, hi):
    """Correct ``searchsorted`` windows to exactly ``|pool - center| <= radius``.

    ``center +- radius`` is rounded, and the k-th neighbour sits right at the radius by
    construction, so the rounded bounds often take in one sample too many; a tree search
    compares the distance itself. The fix-up moves each bound while its edge sample is on
    the wrong side of the exact test (a few steps at most, more only for exact ties).
    """
    n = pool.shape[1]
    for _ in range(n):
        inside_hi = (pool.gather(1, (hi - 1).clamp(min=0)) - centers) <= radius
        shrink_hi = (hi > lo) & ~inside_hi
        next_hi = pool.gather(1, hi.clamp(max=n - 1)) - centers
        grow_hi = (hi < n) & (next_hi <= radius)
        inside_lo = (centers - pool.gather(1, lo.clamp(max=n - 1))) <= radius
        shrink_lo = (lo < hi) & ~inside_lo
        prev_lo = centers - pool.gather(1, (lo - 1).clamp(min=0))
        grow_lo = (lo > 0) & (prev_lo <= radius)
        if not (shrink_hi.any() or grow_hi.any() or shrink_lo.any() or grow_lo.any()):
            break
        hi = hi - shrink_hi.long() + (grow_hi & ~shrink_hi).long()
        lo = lo + shrink_lo.long() - (grow_lo & ~shrink_lo).long()
    return lo, hi


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
    if rule == "range":
        spread = raw.max(dim=0).values - raw.min(dim=0).values
        return spread > 0 if discrete else spread > spread.max() / 20
    spread = _quantile_columns(raw, 0.75) - _quantile_columns(raw, 0.25)
    return spread > 0.1 if discrete else spread > spread.max() / 10


# --------------------------------------------------------------------------------------
# InfoE


def _predictive_information(inputs: ScoringInputs, *, max_iter: int,
                            tol: float) -> tuple[np.ndarray, tuple[str, ...]]:
    if inputs.discrete:
        design = one_hot_design(inputs.latents)
    else:
        design = _standardize(inputs.latents)
    fit = fit_multinomial_logistic(design, inputs.factors, inputs.factor_sizes,
                                   sample_weight="balanced", max_iter=max_iter, tol=tol)
    conditional = log_loss(fit, design, inputs.factors)
    # The best input-free predictor under balanced weights is uniform: its loss is ln K.
    marginal = torch.log(torch.as_tensor(inputs.factor_sizes, dtype=torch.float64,
                                         device=conditional.device))
    per_factor = ((marginal - conditional) / marginal).cpu().numpy()
    notes = ()
    if not fit.converged:
        notes = (f"InfoE: the logistic regressions hit max_iter={max_iter} before "
                 f"|gradient| <= {tol}; scores depend on the cap, as in the reference",)
    return per_factor, notes
