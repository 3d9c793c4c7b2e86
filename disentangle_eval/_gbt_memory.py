"""Memory of a batched tree fit, before it is allocated.

:func:`fit_bytes` adds up the buffers of :mod:`disentangle_eval._gbt` and its step
modules (scores, gradients, node ids, histogram operands and sums, split search,
tie-break table) for a given fit shape, plus the largest per-stage temporaries. Most
of it is proportional to training rows x trees: a factor with thousands of classes
needs thousands of trees per stage. What the device has free is
:func:`~disentangle_eval._validation.available_memory`.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FitShape", "FitTooLarge", "fit_bytes", "shared_bytes"]

# Tie priorities are hashed for this many stages at once (see TieBreak).
_TIE_CHUNK = 25


class FitTooLarge(ValueError):
    """A fit needs more memory than is available.

    Attributes
    ----------
    needed, available : int
        Bytes of the smallest fit that was tried (one target), and bytes available.
    target : int
        Column of ``y_train`` whose fit alone does not fit.
    """

    def __init__(self, message: str, needed: int, available: int, target: int):
        super().__init__(message)
        self.needed, self.available, self.target = needed, available, target


@dataclass(frozen=True)
class FitShape:
    """Sizes that set a fit's memory: rows, active features, bins, depth, dtypes."""

    n_train: int
    n_test: int
    n_features: int          # input columns
    n_active: int            # non-constant columns (d)
    n_bins: int              # padded bin axis (nb)
    max_depth: int
    histogram_itemsize: int  # 4 (float32 histograms) or 8 (float64)
    pack: int                # count digits per packed column
    n_samples: int = 0       # samples that rows with counts stand for (0: no counts)


def shared_bytes(shape: FitShape) -> int:
    """Bytes held by the calling thread for all groups: features, bins, one-hot matrix."""
    n, n_test, f, d = shape.n_train, shape.n_test, shape.n_features, shape.n_active
    features = n * f * (8 + 4) + n_test * f * 4          # float64 and float32 copies
    binning = n * f * 16 + d * n * 8                     # sort values/indices, bins
    onehot = d * n * (4 + shape.histogram_itemsize) + d * n * 24   # CSR + building it
    return features + binning + onehot


def fit_bytes(shape: FitShape, n_trees: int, n_targets: int) -> int:
    """Bytes of one batched fit of ``n_targets`` targets with ``n_trees`` trees in all."""
    n, n_test, d, nb, depth = (shape.n_train, shape.n_test, shape.n_active, shape.n_bins,
                               shape.max_depth)
    rows = max(n, n_test)
    t = n_trees
    # Scores: raw scores (and their final concatenation), g, h, the scratch array, test
    # scores; the positions of the positive targets and their ones.
    scores = n * t * 8 * 4 + rows * t * 8 + n_test * t * 8 + n * n_targets * 16
    # Node ids, the routing buffers (int64 row index, int32 "goes right", threshold and
    # value of each row: uint8 bins, float32 test values).
    route_itemsize = 1 if nb <= 256 else 8
    routing = ((n + n_test) * t * 4 + rows * t * (8 + 4)
               + n * t * 2 * route_itemsize + n_test * t * 8 + n * d * route_itemsize)
    hist = 0
    if d:
        hs = shape.histogram_itemsize
        parents = max(1, 2 ** (depth - 2))
        block = 48                                    # trees per operand block, at most
        t_pad = t + block + shape.pack                # padding of the tree blocks
        packed = -(-t_pad // shape.pack)
        cells = d * nb * 2 ** (depth - 1) * t          # the deepest level's histograms
        hist = (n * t_pad * hs * (1 + parents) + parents * n * packed * hs
                + parents * d * nb * (t_pad * hs + packed * (hs + 8 + 8 * shape.pack))
                + cells * (2 * 12 + 16)               # cumulative sums; dev, score, denom
                + d * nb * t * 24                     # the root's counts
                + (2 ** depth) * t * nb * 8 * 2       # split search indices, temporaries
                + d * _TIE_CHUNK * depth * t * 2 ** (depth - 1) * 8 * 4)   # tie table
    # Rows with counts: every sample's leaf, gradient and hessian for the leaf sums.
    samples = shape.n_samples * (t * 24 + 8)
    return scores + routing + hist + samples + n * (8 * n_targets + 24)  # codes, weights
