"""Mutual information of every (factor, latent) pair: the NMI matrix of InfoMEC.

Layout: rows = factors, columns = latents, shape (n_factors, n_latents).

Two estimators, as the FactorQVAE evaluation code uses them: the plug-in estimator from
contingency counts for discrete codes, and Ross's nearest-neighbour continuous-discrete
estimator (scikit-learn's ``mutual_info_classif``) for continuous latents. Both work one
latent at a time over blocks of factors, so their scratch memory is bounded by
:data:`WORK_MEMORY_BUDGET` rather than growing with pairs x samples.
"""
from __future__ import annotations

import math
import threading

import torch

from ._scaling import standardize_columns
from ._validation import ScoringInputs

__all__ = ["WORK_MEMORY_BUDGET", "factor_entropies", "nmi_matrix",
           "plugin_mutual_information", "knn_mutual_information", "jittered_column",
           "knn_mi_column"]

# Bytes of scratch an estimator may hold at once, besides its inputs.
WORK_MEMORY_BUDGET = 256 * 2**20
# Scratch of the nearest-neighbour estimator per factor and sample: ~24 int64/float64
# vectors of length n_samples live at once.
_KNN_BYTES_PER_SAMPLE = 24 * 8


def factor_entropies(factors: torch.Tensor, sizes) -> torch.Tensor:
    """Plug-in entropy (nats) of each factor column, shape (n_factors,), float64."""
    n, n_factors = factors.shape
    counts = torch.zeros(n_factors, max(sizes), dtype=torch.int64, device=factors.device)
    counts.scatter_add_(1, factors.T, torch.ones_like(factors.T))
    p = counts.to(torch.float64) / n
    return -torch.where(p > 0, p * torch.log(p), torch.zeros_like(p)).sum(dim=1)


def nmi_matrix(inputs: ScoringInputs, *, n_neighbors: int, seed: int,
               stop: threading.Event | None = None) -> tuple[torch.Tensor, tuple[str, ...]]:
    """NMI ``I(s_i; z_j) / H(s_i)``, shape (n_factors, n_latents), and notes.

    The notes say where the estimator's ``k`` was clamped to the data and which constant
    latents were given an NMI of 0. When ``stop`` is set (by a caller that is being
    interrupted), the continuous estimator returns after its current latent.
    """
    notes: tuple[str, ...] = ()
    if inputs.discrete:
        mi = plugin_mutual_information(inputs.latents, inputs.factors, inputs.factor_sizes)
    else:
        mi = knn_mutual_information(inputs.latents, inputs.factors, inputs.factor_sizes,
                                    n_neighbors=n_neighbors, seed=seed, stop=stop)
        smallest = _smallest_label_count(inputs.factors, inputs.factor_sizes)
        if n_neighbors > smallest - 1:
            notes += (f"NMI: n_neighbors={n_neighbors} exceeds the other samples of the "
                      f"smallest factor value ({smallest - 1}); there the estimator uses "
                      "k = min(n_neighbors, count - 1), as scikit-learn does",)
        constant = (inputs.latents.amax(dim=0) == inputs.latents.amin(dim=0)).cpu()
        if bool(constant.any()):
            notes += (f"NMI: latent(s) {torch.nonzero(constant).squeeze(1).tolist()} are "
                      "constant; their NMI is 0 (the reference's tie-breaking jitter makes "
                      "them estimator noise around 0)",)
    return mi / factor_entropies(inputs.factors, inputs.factor_sizes)[:, None], notes


def _smallest_label_count(factors: torch.Tensor, sizes) -> int:
    counts = torch.zeros(factors.shape[1], max(sizes), dtype=torch.int64, device=factors.device)
    counts.scatter_add_(1, factors.T, torch.ones_like(factors.T))
    return int(counts.masked_fill(counts == 0, factors.shape[0] + 1).min())


# --------------------------------------------------------------------------------------
# Plug-in estimator (discrete latents)


def plugin_mutual_information(codes: torch.Tensor, factors: torch.Tensor,
                              sizes) -> torch.Tensor:
    """Plug-in MI (nats) of every (factor, latent) pair, shape (n_factors, n_latents).

    ``sum_cells p(y, z) log(p(y, z) / (p(y) p(z)))`` over the non-empty cells of each
    contingency table, as ``sklearn.metrics.mutual_info_score``. A table is counted with
    one ``bincount`` when it has at most a few cells per sample, and sparsely (the distinct
    cells of the sorted pair keys) otherwise, so memory stays O(n_samples) per pair however
    many values the codes and factors take.
    """
    n, n_latents = codes.shape
    n_factors = factors.shape[1]
    latent_sizes = (codes.amax(dim=0) + 1).tolist()
    log_n = math.log(n)
    out = torch.zeros(n_factors, n_latents, dtype=torch.float64, device=codes.device)
    factor_log_counts = [torch.bincount(factors[:, i], minlength=sizes[i]).to(torch.float64).log()
                         for i in range(n_factors)]
    for j in range(n_latents):
        z, kz = codes[:, j], int(latent_sizes[j])
        latent_log_counts = torch.bincount(z, minlength=kz).to(torch.float64).log()
        for i in range(n_factors):
            key = factors[:, i] * kz + z
            if sizes[i] * kz <= 4 * n:
                joint = torch.bincount(key, minlength=sizes[i] * kz)
                cells = torch.nonzero(joint).squeeze(1)
                cell_counts = joint[cells]
            else:
                cells, cell_counts = torch.unique(key, sorted=True, return_counts=True)
            cell_counts = cell_counts.to(torch.float64)
            terms = cell_counts * (cell_counts.log() + log_n - factor_log_counts[i][cells // kz]
                                   - latent_log_counts[cells % kz])
            out[i, j] = terms.sum() / n
    return out.clamp(min=0)


# --------------------------------------------------------------------------------------
# Nearest-neighbour estimator (continuous latents)


def jittered_column(column: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A latent column as ``mutual_info_classif`` sees it: standardised plus a 1e-10 jitter.

    The noise is drawn on the CPU from ``generator`` (one standard normal per sample), so
    CPU and GPU runs with the same seed see the same values.
    """
    x = standardize_columns(column[:, None])[:, 0]
    noise = torch.randn(x.shape[0], generator=generator, dtype=torch.float64).to(x.device)
    return x + 1e-10 * torch.clamp(x.abs().mean(), min=1.0) * noise


def knn_mutual_information(latents: torch.Tensor, factors: torch.Tensor, sizes, *,
                           n_neighbors: int, seed: int,
                           stop: threading.Event | None = None) -> torch.Tensor:
    """Continuous-discrete MI (nats) of every (factor, latent) pair, shape (n_factors, n_latents).

    Each latent column is standardised and jittered once (:func:`jittered_column`), sorted
    once, and shared by every factor (:func:`knn_mi_column`). A constant column has no
    information: its MI is 0, where the jitter alone would give estimator noise.
    """
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    digamma_of = _digamma_table(latents.shape[0], latents.device)
    columns = []
    for j in range(latents.shape[1]):
        if stop is not None and stop.is_set():
            break
        x = jittered_column(latents[:, j], generator)  # drawn for every column: same seeds
        if bool(latents[:, j].amax() == latents[:, j].amin()):
            columns.append(torch.zeros(factors.shape[1], dtype=torch.float64,
                                       device=latents.device))
        else:
            columns.append(knn_mi_column(x, factors, sizes, n_neighbors,
                                         digamma_of=digamma_of))
    if len(columns) < latents.shape[1]:
        return torch.full((factors.shape[1], latents.shape[1]), float("nan"),
                          dtype=torch.float64, device=latents.device)  # stopped: unused
    return torch.stack(columns, dim=1)


def _digamma_table(n: int, device) -> torch.Tensor:
    """``psi(1), ..., psi(n)``: every digamma the estimator needs is of an integer <= n."""
    return torch.special.digamma(torch.arange(1, n + 1, dtype=torch.float64, device=device))


def knn_mi_column(x: torch.Tensor, factors: torch.Tensor, sizes, n_neighbors: int, *,
                  budget: int = WORK_MEMORY_BUDGET,
                  digamma_of: torch.Tensor | None = None) -> torch.Tensor:
    """Ross's estimator of ``I(factor_i; x)`` for one prepared column and every factor.

    Defined as scikit-learn's ``_compute_mi_cd``: a sample whose label occurs once is
    ignored; for the others, ``k = min(n_neighbors, count - 1)``, the radius is just below
    the distance to the k-th nearest other sample of the same label, ``m`` counts every
    kept sample within the radius (itself included), and
    ``MI = psi(n) + <psi(k)> - <psi(count)> - <psi(m)>``, clipped at 0.

    In one dimension the k nearest same-label neighbours, with the sample, are a window of
    k + 1 consecutive samples of the label in value order (the best of the k + 1 such
    windows); ``m`` is a difference of two ``searchsorted`` positions in the sorted column.

    Parameters
    ----------
    x : torch.Tensor of shape (n_samples,), float64
        The column as :func:`jittered_column` returns it.
    factors : torch.Tensor of shape (n_samples, n_factors), int64, codes 0..sizes[i]-1
    sizes : sequence of int
    n_neighbors : int
    budget : int
        Bytes of scratch to hold at once; factors are processed in blocks that fit.
    digamma_of : torch.Tensor of shape (n_samples,), optional
        ``psi(1..n_samples)``, when the caller shares it between columns.

    Returns
    -------
    torch.Tensor of shape (n_factors,), float64
    """
    n = x.shape[0]
    order = torch.argsort(x, stable=True)
    pool = x[order]
    if digamma_of is None:
        digamma_of = _digamma_table(n, x.device)
    n_factors = factors.shape[1]
    block = max(1, min(n_factors, budget // (_KNN_BYTES_PER_SAMPLE * n)))
    out = []
    for start in range(0, n_factors, block):
        stop = min(n_factors, start + block)
        labels = factors.T[start:stop][:, order]        # (B, N), in value order
        out.append(_ross_estimate(pool, labels, max(sizes[start:stop]), n_neighbors,
                                  digamma_of))
    return torch.cat(out)


def _ross_estimate(pool, labels, n_labels, n_neighbors, digamma_of):
    """The estimate for each row of ``labels`` (B, N): the labels of the samples of the
    sorted column ``pool`` (N,), in the same order."""
    b, n = labels.shape
    counts = torch.zeros(b, n_labels, dtype=torch.int64, device=labels.device)
    counts.scatter_add_(1, labels, torch.ones_like(labels))
    firsts = torch.cumsum(counts, dim=1) - counts
    by_label = torch.argsort(labels, dim=1, stable=True)    # (label, value) order
    values = pool[by_label]
    grouped = labels.gather(1, by_label)
    count = counts.gather(1, grouped)
    rank = torch.arange(n, device=labels.device) - firsts.gather(1, grouped)
    k = torch.clamp(count - 1, max=n_neighbors)
    kth = _kth_neighbour_distance(values, rank, count, k)

    # Count in value order: the centres are then the sorted pool itself, so the searches
    # and the window fix-up walk the pool almost sequentially.
    kth = torch.empty_like(kth).scatter_(1, by_label, kth)
    radius = torch.nextafter(kth, torch.zeros((), dtype=kth.dtype, device=kth.device))
    centers = pool.expand(b, n)
    # Samples strictly closer than the k-th neighbour: searched with the distance itself,
    # the rounded bounds are off only where rounding differs (a few in a thousand).
    lo = torch.searchsorted(pool, centers - kth, right=True)
    hi = torch.searchsorted(pool, centers + kth, right=False)
    lo, hi = _exact_window(pool, centers, radius, lo, hi)
    within = hi - lo
    alone = counts == 1
    if bool(alone.any()):
        # Samples alone in their label are not counted: subtract those inside each window.
        alone_before = torch.zeros(b, n + 1, dtype=torch.int64, device=labels.device)
        alone_before[:, 1:] = torch.cumsum(alone.gather(1, labels).long(), dim=1)
        within = within - (alone_before.gather(1, hi) - alone_before.gather(1, lo))
    kept_f = (counts.gather(1, labels) > 1).to(torch.float64)  # in value order, as within
    n_kept = kept_f.sum(dim=1)
    label_kept = (counts > 1).to(torch.float64)
    label_counts = counts.to(torch.float64)
    per_label_k = torch.clamp(counts - 1, min=1, max=n_neighbors)
    # <psi(k)> and <psi(count)> are per-label sums weighted by the label counts.
    psi_k = (label_counts * label_kept * digamma_of[per_label_k - 1]).sum(dim=1)
    psi_count = (label_counts * label_kept * digamma_of[counts.clamp(min=1) - 1]).sum(dim=1)
    psi_m = (digamma_of[within.clamp(min=1) - 1] * kept_f).sum(dim=1)
    safe = n_kept.clamp(min=1)
    mi = (digamma_of[safe.long() - 1] + (psi_k - psi_count - psi_m) / safe).clamp(min=0)
    return torch.where(n_kept > 0, mi, torch.zeros_like(mi))


# Up to this k the k + 1 candidate windows are compared directly (shifted slices, no
# gathers); beyond it a binary search over the windows takes fewer passes.
_DIRECT_WINDOWS_MAX_K = 8


def _kth_neighbour_distance(values, rank, count, k):
    """Distance from each sample to its k-th nearest other sample of the same label.

    ``values`` (B, N) holds each label's samples as one sorted run; a sample at ``rank``
    in a run of ``count`` has its k nearest run-mates in a window of k + 1 consecutive
    samples that contains it, taking ``a`` from the left and ``k - a`` from the right.
    The window's reach is ``max(left(a), right(a))``, with ``left`` non-decreasing and
    ``right`` non-increasing in ``a``; the distance is the smallest reach.
    """
    k_max = int(k.max()) if k.numel() else 0
    if k_max <= _DIRECT_WINDOWS_MAX_K:
        return _kth_by_all_windows(values, rank, count, k, k_max)
    return _kth_by_binary_search(values, rank, count, k)


def _kth_by_all_windows(values, rank, count, k, k_max):
    """Smallest reach over the k_max + 1 windows, for samples whose k is k_max; samples of
    runs too short for that (k = count - 1 < k_max) take the whole run."""
    inf = float("inf")
    after = count - 1 - rank
    best = torch.full_like(values, inf)
    for a in range(k_max + 1):
        reach = torch.zeros_like(values)
        if a:
            reach[:, a:] = values[:, a:] - values[:, :-a]
            reach.masked_fill_(rank < a, inf)
        b = k_max - a
        if b:
            right = torch.full_like(values, inf)
            right[:, :-b] = values[:, b:] - values[:, :-b]
            right.masked_fill_(after < b, inf)
            reach = torch.maximum(reach, right)
        best = torch.minimum(best, reach)
    short = k < k_max
    if bool(short.any()):
        position = torch.arange(values.shape[1], device=values.device)
        whole_run = torch.maximum(values - values.gather(1, position - rank),
                                  values.gather(1, position + after) - values)
        best = torch.where(short, whole_run, best)
    return best


def _kth_by_binary_search(values, rank, count, k):
    """The crossing of ``left`` and ``right`` found by bisection: ``log2(k)`` passes."""
    n = values.shape[1]
    position = torch.arange(n, device=values.device)
    a_lo = torch.clamp(k - (count - 1 - rank), min=0)
    a_hi = torch.minimum(k, rank)
    lo, hi = a_lo, a_hi + 1

    def left(a):
        return values - values.gather(1, position - a)

    def right(a):
        return values.gather(1, position + k - a) - values

    for _ in range(int(k.max()).bit_length() + 1):
        mid = torch.minimum((lo + hi) // 2, a_hi)
        searching = lo < hi
        crossed = left(mid) >= right(mid)
        hi = torch.where(searching & crossed, mid, hi)
        lo = torch.where(searching & ~crossed, mid + 1, lo)
    inf = torch.tensor(float("inf"), dtype=values.dtype, device=values.device)
    at_crossing = torch.where(lo <= a_hi, left(torch.minimum(lo, a_hi)), inf)
    before = torch.where(lo - 1 >= a_lo, right(torch.maximum(lo - 1, a_lo)), inf)
    return torch.minimum(at_crossing, before)


def _exact_window(pool, centers, radius, lo, hi):
    """Correct ``searchsorted`` windows to exactly ``|pool - center| <= radius``.

    scikit-learn's tree compares the rounded distance ``fl(|s - c|)`` with the radius, and
    the k-th neighbour sits right at the radius by construction, so the rounded bounds
    ``c +- radius`` often take in one sample too many. Each bound moves one sample at a time
    while its edge sample is on the wrong side of the exact test: one pass over every
    window, then passes over the few that moved (more than one step only for exact ties).
    """
    n, shape = pool.shape[0], lo.shape
    lo, hi = lo.reshape(-1), hi.reshape(-1)
    centers, radius = centers.reshape(-1), radius.reshape(-1)
    lanes = None
    for _ in range(n + 1):
        if lanes is None:
            c, r, l, h = centers, radius, lo, hi
        else:
            c, r, l, h = centers[lanes], radius[lanes], lo[lanes], hi[lanes]
        shrink_hi = (h > l) & ((pool[(h - 1).clamp(min=0)] - c) > r)
        grow_hi = ~shrink_hi & (h < n) & ((pool[h.clamp(max=n - 1)] - c) <= r)
        shrink_lo = (l < h) & ((c - pool[l.clamp(max=n - 1)]) > r)
        grow_lo = ~shrink_lo & (l > 0) & ((c - pool[(l - 1).clamp(min=0)]) <= r)
        moving = shrink_hi | grow_hi | shrink_lo | grow_lo
        if not bool(moving.any()):
            break
        new_hi = h - shrink_hi.long() + grow_hi.long()
        new_lo = l + shrink_lo.long() - grow_lo.long()
        if lanes is None:
            lo, hi = new_lo, new_hi
            lanes = torch.nonzero(moving).squeeze(1)
        else:
            hi[lanes], lo[lanes] = new_hi, new_lo
            lanes = lanes[moving]
    return lo.view(shape), hi.view(shape)
