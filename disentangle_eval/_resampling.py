"""Which rows each replicate of a metric sees: resampling plans and the rows they draw.

A plan is a property of the metric (and of whether the latents are discrete codes), kept
on its registry entry (:class:`disentangle_eval._registry.MetricSpec`):

- ``"bootstrap"``: N rows drawn with replacement. Valid for plug-in estimators (contingency
  tables) and fitted predictors (trees, logistic regressions), for which a repeated row is
  a row of weight two.
- ``"half"``: half-sampling, ``m = floor(N / 2)`` rows drawn without replacement. A
  repeated row would sit at distance 0 from itself and bias a nearest-neighbour
  estimator; half-samples never repeat a row. The spread of a half-sample statistic
  around the full-sample one is rescaled by ``sqrt(m / (N - m))`` (about 1): with the
  finite-population correction its variance is ``sigma^2 (1/m - 1/N)``, the full
  sample's is ``sigma^2 / N``.
- ``within_split``: metrics that fit on training rows and score on test rows keep the
  two apart: each replicate resamples the training part and the test part separately, so
  that no row is both fitted and scored. With ``split="random"`` each replicate first
  draws its own random split (a fresh sample of the same procedure); with
  ``split="contiguous"`` the user's split is kept.

Replicates are defined by the rows' content, not their positions: rows are put in a
canonical order (sorted by a hash of their values) before any index is drawn, so a
permutation of the rows (applied to every file alike) draws the same replicates.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ._split import split_rows
from ._validation import ScoringInputs, check_inputs

__all__ = ["Resampling", "SCHEMES", "Replicate", "row_keys", "canonical_order",
           "replicate_seed", "draw_replicates", "deviation_scale", "replicate_inputs",
           "replicate_settings"]

SCHEMES = ("bootstrap", "half")


@dataclass(frozen=True)
class Resampling:
    """How a metric's rows are resampled for confidence intervals.

    Attributes
    ----------
    discrete, continuous : {"bootstrap", "half"}
        Scheme used when the latents are discrete codes / continuous values.
    within_split : bool
        The metric fits on training rows and scores test rows: resample the two parts
        separately (see the module docstring).
    default_resamples : int
        Replicates used when the caller does not choose a number.
    value_range : (float, float)
        Range of every headline value of the metric; intervals are cut to it.
    bias_correction : bool
        Centre bootstrap intervals on the estimate minus the bootstrap's bias estimate
        (see :mod:`disentangle_eval._intervals`); for consistent estimators of a
        population quantity (information estimates), not for values that depend on the
        number of rows by design (a fitted predictor's accuracy and importances).
        Half-sampling intervals are never corrected.
    """

    discrete: str = "half"
    continuous: str = "half"
    within_split: bool = False
    default_resamples: int = 100
    value_range: tuple[float, float] = (0.0, 1.0)
    bias_correction: bool = False

    def __post_init__(self):
        for scheme in (self.discrete, self.continuous):
            if scheme not in SCHEMES:
                raise ValueError(f"resampling scheme must be one of {SCHEMES}, got {scheme!r}")

    def scheme(self, discrete: bool) -> str:
        """The scheme for discrete (``True``) or continuous latents."""
        return self.discrete if discrete else self.continuous

    def corrects_bias(self, scheme: str) -> bool:
        """Whether intervals of replicates drawn by ``scheme`` are bias-corrected."""
        return self.bias_correction and scheme == "bootstrap"

    def describe(self, discrete: bool | Sequence[bool]) -> str:
        """One line for reports, e.g. ``"bootstrap within the train/test split"``."""
        flags = [discrete] if isinstance(discrete, bool) else list(discrete)
        scheme = joint_scheme(self, flags)
        text = "bootstrap" if scheme == "bootstrap" else "half-sampling"
        return text + (" within the train/test split" if self.within_split else "")


def joint_scheme(plan: Resampling, discrete_flags: Sequence[bool]) -> str:
    """One scheme valid for every representation resampled together (paired replicates).

    Half-sampling is valid wherever the bootstrap is, not the other way round.
    """
    schemes = {plan.scheme(bool(flag)) for flag in discrete_flags}
    return "half" if "half" in schemes else "bootstrap"


@dataclass(frozen=True)
class Replicate:
    """Rows of one replicate, as indices into the original rows.

    Attributes
    ----------
    rows : numpy.ndarray of int64
        For a within-split plan, the training rows come first.
    n_train : int or None
        Number of training rows at the front of ``rows`` (within-split plans only).
    seed : int
        Seed of the replicate's own random steps (the metric's ``seed``).
    """

    rows: np.ndarray
    n_train: int | None
    seed: int


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, elementwise on uint64 (wraps modulo 2**64)."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def row_keys(*arrays) -> np.ndarray:
    """A 64-bit hash of each row's values across ``arrays`` (each of shape (N, ...)).

    Equal rows get equal keys; the key does not depend on the row's position.
    """
    n = int(np.asarray(arrays[0]).shape[0])
    key = np.zeros(n, dtype=np.uint64)
    for array in arrays:
        values = np.asarray(array).reshape(n, -1)
        if values.dtype.kind == "f":
            # -0.0 and 0.0 are the same value; float64 bits of every number otherwise.
            words = (values.astype(np.float64) + 0.0).view(np.uint64)
        else:
            words = values.astype(np.int64).view(np.uint64)
        for column in range(words.shape[1]):
            key = _splitmix64(key ^ _splitmix64(words[:, column]))
    return key


def canonical_order(*arrays) -> np.ndarray:
    """Row indices sorted by :func:`row_keys`: the same rows in the same order whatever
    order the rows were given in (rows with equal keys are equal, so their order among
    themselves does not matter)."""
    return np.argsort(row_keys(*arrays), kind="stable")


def replicate_seed(seed: int, replicate: int) -> int:
    """The seed of replicate ``replicate`` of a run seeded with ``seed`` (< 2**31)."""
    entropy = [int(seed) % 2**64, int(replicate)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] >> 1)


def _draw(rng: np.random.Generator, pool: np.ndarray, scheme: str) -> np.ndarray:
    if scheme == "bootstrap":
        return pool[rng.integers(0, len(pool), size=len(pool))]
    return pool[np.sort(rng.permutation(len(pool))[: len(pool) // 2])]


def draw_replicates(order: np.ndarray, scheme: str, n_resamples: int, seed: int, *,
                    within_split: bool = False, split: str = "random",
                    train_fraction: float = 0.9) -> list[Replicate]:
    """Draw ``n_resamples`` replicates of the rows in canonical ``order``.

    Parameters
    ----------
    order : numpy.ndarray of shape (n_samples,)
        :func:`canonical_order` of the rows.
    scheme : {"bootstrap", "half"}
    n_resamples : int
    seed : int
    within_split, split, train_fraction
        For metrics that fit on training rows: the split is that of the metric
        (``split_rows``), drawn afresh per replicate for ``split="random"`` over the
        canonical order, the user's rows for ``"contiguous"``; each part is then
        resampled on its own.

    Returns
    -------
    list of Replicate
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    n = len(order)
    if within_split and split == "contiguous":
        train, test = split_rows(n, "contiguous", train_fraction, 0)
        # The user's split is positional; within each part, canonical order.
        position = np.empty(n, dtype=np.int64)
        position[order] = np.arange(n)
        fixed = (train[np.argsort(position[train], kind="stable")],
                 test[np.argsort(position[test], kind="stable")])
    replicates = []
    for r in range(n_resamples):
        rseed = replicate_seed(seed, r)
        rng = np.random.default_rng(rseed)
        if not within_split:
            replicates.append(Replicate(_draw(rng, order, scheme), None, rseed))
            continue
        if split == "contiguous":
            train_pool, test_pool = fixed
        else:
            train_idx, test_idx = split_rows(n, split, train_fraction, rseed)
            train_pool, test_pool = order[train_idx], order[test_idx]
        train_rows, test_rows = _draw(rng, train_pool, scheme), _draw(rng, test_pool, scheme)
        replicates.append(Replicate(np.concatenate([train_rows, test_rows]),
                                    len(train_rows), rseed))
    return replicates


def deviation_scale(n_samples: int, scheme: str) -> float:
    """Factor taking replicate-minus-estimate deviations to the estimate's sampling error.

    1 for the bootstrap; ``sqrt(m / (N - m))`` for half-samples of ``m = floor(N / 2)``
    rows (see the module docstring). Standard errors scale by this factor, bias
    estimates by its square.
    """
    if scheme == "bootstrap":
        return 1.0
    m = n_samples // 2
    return math.sqrt(m / (n_samples - m))


def replicate_inputs(inputs: ScoringInputs, replicate: Replicate) -> ScoringInputs:
    """The replicate's rows as a dataset of their own (labels relabelled, checks rerun:
    a factor left with a single value raises :class:`DataError`)."""
    rows = torch.as_tensor(replicate.rows, device=inputs.device)
    return check_inputs(inputs.raw_latents[rows], inputs.factors[rows],
                        discrete=inputs.discrete, device=inputs.device)


def replicate_settings(shared: dict, replicate: Replicate) -> dict:
    """Scoring settings of one replicate: its own seed; for a within-split plan a
    contiguous split at exactly ``n_train`` rows (the training rows come first)."""
    settings = dict(shared, seed=replicate.seed, progress=False)
    if replicate.n_train is not None:
        settings.update(split="contiguous",
                        train_fraction=(replicate.n_train - 0.5) / len(replicate.rows))
    return settings
