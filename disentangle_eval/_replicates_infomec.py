"""InfoMEC of many replicates at once: the logistic fits of every replicate in one pass.

InfoE dominates InfoMEC's cost: one batched L-BFGS per call, tens of iterations of small
tensor operations. Here the fits of a group of replicates run as more targets of one fit
on the rows the group uses, each replicate's rows entering as row counts (bootstrap
multiplicities, or 0/1 for half-samples) and each factor relabelled to the classes the
replicate holds. The objective of every target is exactly the one a separate fit on the
replicate's rows minimises (the unregularised optimum does not depend on the affine map,
nor on one-hot columns of codes the replicate lacks). A bootstrap replicate alone is
fitted on its distinct rows with their counts (about 63% of the rows). The NMI, InfoM
and InfoC of each replicate are computed by the metric's own functions on its rows.
Where a fit cannot converge (separable classes put the unregularised optimum at
infinity) it stops at ``max_iter`` as the reference does, and its value depends on the
path: there the batched and the separate fits differ (by up to 0.03 in InfoE on 1000
MPI3D-like rows, whose 4-class factors are separable), as two reference runs on
differently ordered columns would.

How many replicates share a fit is set by the size of the fit's work arrays: one fit of
many replicates saves the per-iteration overhead, which dominates small problems (20
replicates of 500 rows: 4-5x faster than separate fits on two CPU cores), but the group
works on the union of its rows (all rows, for 20 half-samples), and on CPU a large
problem gains nothing from batching (10000 rows: one fit of 20 half-samples over all
rows took 1.8x longer than 20 fits on their own rows). On a GPU the overhead dominates
much longer.

:func:`disentangle_eval._uncertainty.loop_replicates` (one ``infomec_from_inputs`` call
per replicate) is the reference this is tested against.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ._infomec import InfoMECResult, _active_mask, modularity_compactness
from ._logistic import fit_multinomial_logistic, one_hot_design
from ._nmi import nmi_matrix
from ._resampling import Replicate, replicate_inputs
from ._validation import DataError, ScoringInputs

__all__ = ["infomec_replicates"]

# Bytes of float64 work arrays (targets x classes x rows, a few of them) one fit may hold:
# cache-sized on CPU, memory-sized on a GPU.
_FIT_BUDGET = {"cpu": 16 * 2**20}
_FIT_BUDGET_DEFAULT = 512 * 2**20
_WORK_ARRAYS = 6


def infomec_replicates(spec, sides: Sequence[ScoringInputs], shared: dict,
                       replicates: Sequence[Replicate], *, progress: bool = False,
                       max_iter: int = 500, tol: float = 1e-4) -> np.ndarray:
    """Headline values (InfoM, InfoE, InfoC) of every replicate and side.

    Same signature and result as :func:`disentangle_eval._uncertainty.loop_replicates`:
    an array (n_replicates, n_sides, 3), NaN where a replicate's rows cannot be scored.
    """
    names = InfoMECResult.HEADLINE
    out = np.full((len(replicates), len(sides), len(names)), np.nan)
    n_neighbors = int(shared.get("n_neighbors", 3))
    rule = shared.get("active", "range")
    bar = tqdm(total=len(sides) * len(replicates), desc="infomec replicates",
               unit="replicate", leave=False, disable=None if progress else True)
    for s, inputs in enumerate(sides):
        ok = []
        for r, replicate in enumerate(replicates):
            bar.update()
            try:
                sub = replicate_inputs(inputs, replicate)
            except DataError:
                continue
            nmi, _ = nmi_matrix(sub, n_neighbors=n_neighbors, seed=replicate.seed)
            nmi = nmi.cpu().numpy()
            active = _active_mask(sub.raw_latents, discrete=sub.discrete, rule=rule)
            infom, infoc, _ = modularity_compactness(nmi, active.cpu().numpy())
            out[r, s, names.index("infom")] = infom
            out[r, s, names.index("infoc")] = infoc
            ok.append(r)
        infoe = _replicate_infoe(inputs, [replicates[r] for r in ok], max_iter, tol)
        out[ok, s, names.index("infoe")] = infoe
    bar.close()
    return out


def _row_counts(n_samples: int, replicates: Sequence[Replicate], device) -> torch.Tensor:
    """(n_samples, n_replicates) float64: how often each row appears in each replicate."""
    counts = torch.zeros(len(replicates), n_samples, dtype=torch.float64, device=device)
    for r, replicate in enumerate(replicates):
        rows = torch.as_tensor(replicate.rows, device=device)
        counts[r].index_add_(0, rows, torch.ones(len(rows), dtype=torch.float64,
                                                 device=device))
    return counts.T


def _present_classes(factors: torch.Tensor, counts: torch.Tensor, sizes):
    """Per (replicate, factor) target: labels relabelled to the classes present.

    Returns targets (n_samples, n_replicates * n_factors) int64 (rows a replicate lacks
    get label 0, a present class, at weight 0) and the class count of every target.
    """
    n, n_factors = factors.shape
    n_rep = counts.shape[1]
    k_max = max(sizes)
    class_counts = torch.zeros(n_rep, n_factors, k_max, dtype=torch.float64,
                               device=factors.device)
    index = factors.T[None].expand(n_rep, n_factors, n)
    class_counts.scatter_add_(2, index, counts.T[:, None, :].expand(n_rep, n_factors, n))
    present = class_counts > 0
    new_label = torch.cumsum(present.long(), dim=2) - 1                # (R, F, K)
    targets = new_label.gather(2, index).clamp(min=0)                   # (R, F, N)
    weight = counts.T[:, None, :].expand(n_rep, n_factors, n)
    targets = torch.where(weight > 0, targets, torch.zeros_like(targets))
    n_classes = present.sum(dim=2).reshape(-1).tolist()
    return targets.reshape(n_rep * n_factors, n).T.contiguous(), n_classes


def _replicate_infoe(inputs: ScoringInputs, replicates: Sequence[Replicate], max_iter: int,
                     tol: float) -> np.ndarray:
    """InfoE of each replicate, shape (n_replicates,), from batched logistic fits."""
    if not replicates:
        return np.zeros(0)
    n_factors = inputs.n_factors
    rows_each = max(len(np.unique(replicate.rows)) for replicate in replicates)
    per_replicate = _WORK_ARRAYS * 8 * rows_each * n_factors * max(inputs.factor_sizes)
    budget = _FIT_BUDGET.get(inputs.device.type, _FIT_BUDGET_DEFAULT)
    chunk = max(1, budget // per_replicate)
    out = []
    for start in range(0, len(replicates), chunk):
        part = replicates[start:start + chunk]
        counts = _row_counts(inputs.n_samples, part, inputs.device)    # (N, R)
        used = torch.nonzero(counts.sum(1) > 0).squeeze(1)
        counts = counts[used]
        latents = inputs.latents[used]
        # Unregularised fits do not depend on an affine map of dense inputs (the fitter
        # whitens them), so the raw latents serve every replicate.
        design = one_hot_design(latents) if inputs.discrete else latents
        targets, n_classes = _present_classes(inputs.factors[used], counts,
                                              inputs.factor_sizes)
        row_weights = counts.repeat_interleave(n_factors, dim=1)        # (rows, R * F)
        fit = fit_multinomial_logistic(design, targets, n_classes, sample_weight="balanced",
                                       max_iter=max_iter, tol=tol, row_weights=row_weights)
        log_p = fit.log_proba(design).clamp(min=math.log(torch.finfo(torch.float64).eps))
        log_p_true = log_p.gather(2, targets.T.unsqueeze(-1)).squeeze(-1)   # (R * F, N)
        weights = row_weights.T
        loss = -(log_p_true * weights).sum(1) / weights.sum(1)
        marginal = torch.log(torch.as_tensor(n_classes, dtype=torch.float64,
                                             device=loss.device))
        per_target = (marginal - loss) / marginal
        out.append(per_target.reshape(len(part), n_factors).mean(1).cpu().numpy())
    return np.concatenate(out)
