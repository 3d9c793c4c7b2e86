"""InfoE: normalised predictive V-information of each factor from the latents."""
from __future__ import annotations

import numpy as np
import torch

from ._logistic import check_fit_options, fit_multinomial_logistic, log_loss, one_hot_design
from ._scaling import standardize_columns
from ._validation import DataError, ScoringInputs, check_inputs

__all__ = ["check_infoe_size", "predictive_information", "predictive_information_from_inputs"]

# The fit's state is ~30 parameter-sized float64 tensors per target (L-BFGS history,
# trial points, gradients); refuse designs whose parameters alone would exceed this.
_MAX_FIT_BYTES = 2 * 2**30


def predictive_information(latents, factors, *, discrete: bool | None = None, device=None,
                           max_iter: int = 500, tol: float = 1e-4) -> np.ndarray:
    """Normalised predictive V-information of each factor, shape (n_factors,).

    ``(ln K_i - CE_i) / ln K_i`` with ``CE_i`` the in-sample log-loss of an unregularised
    multinomial logistic regression fitted with balanced class weights, and ``ln K_i`` the
    loss of the best input-free predictor under balanced weights (the uniform one).
    Continuous latents are standardised, discrete ones one-hot encoded, as the reference.

    Parameters
    ----------
    latents : array-like or torch.Tensor of shape (n_samples, n_latents)
    factors : array-like or torch.Tensor of shape (n_samples, n_factors), integer labels
    discrete : bool or None, default=None
        Treat latents as discrete codes; ``None`` infers it from the dtype.
    device : str, torch.device or None, default=None
    max_iter : int, default=500
        Iteration cap of each fit (the reference's).
    tol : float, default=1e-4
        Gradient tolerance of each fit (the reference's).

    Returns
    -------
    ndarray of shape (n_factors,)

    Examples
    --------
    >>> import numpy as np
    >>> from disentangle_eval import predictive_information
    >>> rng = np.random.default_rng(0)
    >>> factors = rng.integers(0, 4, size=(2000, 2))
    >>> latents = factors + 0.1 * rng.standard_normal((2000, 2))
    >>> predictive_information(latents, factors, device="cpu").round(2)
    array([1., 1.])
    """
    check_fit_options(max_iter=max_iter, tol=tol)
    inputs = check_inputs(latents, factors, discrete=discrete, device=device)
    return predictive_information_from_inputs(inputs, max_iter=max_iter, tol=tol)[0]


def predictive_information_from_inputs(inputs: ScoringInputs, *, max_iter: int = 500,
                                       tol: float = 1e-4) -> tuple[np.ndarray, tuple[str, ...]]:
    """:func:`predictive_information` of checked inputs, and notes (a fit that hit
    ``max_iter``)."""
    check_fit_options(max_iter=max_iter, tol=tol)
    check_infoe_size(inputs)
    if inputs.discrete:
        design = one_hot_design(inputs.latents)
    else:
        design = standardize_columns(inputs.latents)
    fit = fit_multinomial_logistic(design, inputs.factors, inputs.factor_sizes,
                                   sample_weight="balanced", max_iter=max_iter, tol=tol)
    conditional = log_loss(fit, design, inputs.factors)
    # The best input-free predictor under balanced weights is uniform: its loss is ln K.
    marginal = torch.log(torch.as_tensor(inputs.factor_sizes, dtype=torch.float64,
                                         device=conditional.device))
    per_factor = ((marginal - conditional) / marginal).cpu().numpy()
    notes: tuple[str, ...] = ()
    if not fit.converged:
        notes = (f"InfoE: the logistic regressions hit max_iter={max_iter} before "
                 f"|gradient| <= {tol}; scores depend on the cap, as in the reference",)
    return per_factor, notes


def check_infoe_size(inputs: ScoringInputs) -> None:
    """Raise :class:`DataError` when the InfoE fits' state would not fit in memory.

    Discrete latents are one-hot encoded, so every distinct code is an input of every
    classifier; with thousands of codes and a factor of many values, the parameters alone
    (kept ~30 times over by the optimiser) run to gigabytes.
    """
    if inputs.discrete:
        n_features = int((inputs.latents.amax(dim=0) + 1).sum())
    else:
        n_features = inputs.n_latents
    largest = max(inputs.factor_sizes)
    group = sum(k > largest // 2 for k in inputs.factor_sizes)
    needed = 30 * 8 * (n_features + 1) * largest * group
    if needed > _MAX_FIT_BYTES:
        raise DataError(
            f"InfoE would fit {n_features + 1} inputs x {largest} classes for {group} "
            f"factor(s) at once (~{needed / 2**30:.1f} GiB of optimiser state, limit "
            f"{_MAX_FIT_BYTES / 2**30:.0f} GiB): the latents have too many distinct codes "
            "or a factor too many values; score continuous latents as continuous "
            "(--continuous) or coarsen the codes or the factor")
