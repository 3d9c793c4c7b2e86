"""The boosting loop of one group of targets, on the calling thread.

Every stage: the probabilities and the gradients of the log-loss of every tree
(:class:`_Scores`), one tree per target and class grown on the rounded gradients
(:class:`~disentangle_eval._gbt_trees.TreeGrower`), and a Newton step per leaf added to
the raw scores of the training and test rows. At the end, the importances per target
and the predicted labels.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ._gbt_binning import BinnedFeatures
from ._gbt_splits import MASK31, TieBreak, content_key, row_weights
from ._gbt_trees import TreeGrower

__all__ = ["GBTFit", "FitStopped", "RowCounts", "fit_targets"]


class FitStopped(Exception):
    """The fit was asked to stop (another worker failed or the user interrupted)."""


@dataclass(frozen=True)
class GBTFit:
    """Result of :func:`fit_gbt_classifiers`.

    Attributes
    ----------
    importance : torch.Tensor of shape (n_features, n_targets), float64
        Impurity importances; each column sums to 1 (0 where no tree of that target split).
    predict_train : torch.Tensor of shape (n_train, n_targets), int64
        Predicted labels of the training rows.
    predict_test : torch.Tensor of shape (n_test, n_targets), int64
        Predicted labels of the test rows.
    """

    importance: torch.Tensor
    predict_train: torch.Tensor
    predict_test: torch.Tensor


@dataclass(frozen=True)
class RowCounts:
    """Training rows that stand for repeated samples (e.g. a bootstrap replicate).

    The fit on the distinct rows with these counts is bitwise the fit on the samples,
    every repeat written out in ``positions`` order: the histograms are exact sums,
    and the leaf sums (float64, order-dependent) add the samples in that order.

    Attributes
    ----------
    counts : torch.Tensor of shape (n_rows,), int64
        Samples each row stands for (>= 1).
    positions : torch.Tensor of shape (n_samples,), int64
        The row of each sample, in the samples' order.
    key_weights : torch.Tensor of shape (n_rows,), int64
        Sum of the tie-break content weights (:func:`~._gbt_splits.row_weights` of
        ``n_samples``) of each row's samples.
    """

    counts: torch.Tensor
    positions: torch.Tensor
    key_weights: torch.Tensor

    @classmethod
    def of_samples(cls, positions: torch.Tensor, n_rows: int) -> "RowCounts":
        """The counts of samples given as row indices ``positions`` (n_samples,)."""
        device = positions.device
        counts = torch.bincount(positions, minlength=n_rows)
        keys = torch.zeros(n_rows, dtype=torch.int64, device=device).index_add_(
            0, positions, row_weights(positions.numel(), device))
        return cls(counts=counts, positions=positions, key_weights=keys)

    @property
    def n_samples(self) -> int:
        return self.positions.numel()


class _Targets:
    """The trees of the targets: one per class (K > 2, softmax) or one (K = 2, sigmoid).

    Trees are numbered target by target; ``slices[f]`` are target ``f``'s trees. Per tree:
    the one-vs-rest target (class ``tree_class`` of target ``tree_target``), the initial
    raw score, the Newton factor of the leaf step, and a content key for tie-breaking.
    """

    def __init__(self, y: torch.Tensor, weights: torch.Tensor, counts: torch.Tensor | None,
                 n_samples: int):
        n, n_targets = y.shape
        device = y.device
        self.classes, codes = [], []
        for f in range(n_targets):
            cls, inv = torch.unique(y[:, f], return_inverse=True)
            self.classes.append(cls)
            codes.append(inv)
        self.n_classes = [c.numel() for c in self.classes]
        self.slices, start = [], 0
        for k in self.n_classes:
            self.slices.append((start, start + (1 if k == 2 else k)))
            start = self.slices[-1][1]
        self.n_trees = start
        f64 = torch.float64
        # Per class of each target: its training rows and their weights' sum.
        prior, ones_weight, binomial, newton = [], [], [], []
        for f, k in enumerate(self.n_classes):
            count = torch.bincount(codes[f], minlength=k) if counts is None else \
                torch.zeros(k, dtype=torch.int64, device=device).index_add_(0, codes[f], counts)
            weight = torch.zeros(k, dtype=torch.int64, device=device).index_add_(
                0, codes[f], weights)
            chosen = slice(1, 2) if k == 2 else slice(0, k)      # binomial: class 1's tree
            prior.append(count[chosen].to(f64) / n_samples)
            ones_weight.append(weight[chosen])
            binomial += [k == 2] * (1 if k == 2 else k)
            newton += [1.0 if k == 2 else (k - 1) / k] * (1 if k == 2 else k)
        binomial = torch.as_tensor(binomial, device=device)
        self.newton = torch.as_tensor(newton, dtype=f64, device=device)
        eps = torch.finfo(f64).eps
        prior = torch.cat(prior).clamp(eps, 1 - eps)
        # Log prior (multinomial), log-odds of the prior (binomial).
        self.init = torch.where(binomial, torch.log(prior / (1 - prior)), torch.log(prior))
        # A content key of each tree's 0/1 target (and of 1 - y for a binomial target,
        # whose single tree does not depend on which class is "1").
        ones_weight = torch.cat(ones_weight)
        self.key = torch.where(
            binomial, torch.minimum(ones_weight + n_samples,
                                    weights.sum() - ones_weight + n_samples),
            ones_weight + n_samples) & MASK31
        # Positions (row * T + tree) where the one-vs-rest target is 1: the gradient y - p
        # is -p plus one there, without an (n, T) target array.
        rows = torch.arange(n, device=device) * self.n_trees
        self.positive = torch.cat([
            rows[codes[f] == 1] + a if k == 2 else rows + a + codes[f]
            for f, ((a, _), k) in enumerate(zip(self.slices, self.n_classes))])

    def predict(self, raw: torch.Tensor) -> torch.Tensor:
        """Labels (rows, targets) of raw scores (rows, T)."""
        out = []
        for f, (a, b) in enumerate(self.slices):
            mine = raw[:, a:b]
            index = (mine[:, 0] >= 0).long() if self.n_classes[f] == 2 else mine.argmax(1)
            out.append(self.classes[f][index])
        return torch.stack(out, 1)


def _softmax_groups(slices: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """Runs of adjacent targets with equally many trees: (first tree, end, trees each).

    ``k == 1`` marks binomial targets (one tree, sigmoid); a run of multinomial targets is
    one softmax over a (rows, targets, k) view.
    """
    groups = []
    for a, b in slices:
        if groups and groups[-1][2] == b - a and groups[-1][1] == a:
            groups[-1] = (groups[-1][0], b, b - a)
        else:
            groups.append((a, b, b - a))
    return groups


class _Scores:
    """Raw scores of the training and test rows, and the gradients of the log-loss.

    The training scores are stored per softmax group (:func:`_softmax_groups`), each a
    contiguous (n, targets, k) array. One float64 (rows x trees) array, ``scratch``,
    holds in turn within a stage the probabilities, the rounded gradients and the leaf
    steps of the training rows, then the leaf steps of the test rows: each is dead before
    the next is written, and one multi-megabyte array fewer means less cache traffic.
    """

    def __init__(self, targets: _Targets, n: int, n_test: int):
        device = targets.init.device
        f64 = torch.float64
        n_trees = targets.n_trees
        self.n, self.n_test, self.n_trees = n, n_test, n_trees
        self.groups = _softmax_groups(targets.slices)
        self.raw_groups = [targets.init[None, a:b].expand(n, b - a).reshape(n, -1, k)
                           .contiguous() for a, b, k in self.groups]
        self.raw_test = targets.init[None, :].expand(n_test, n_trees).contiguous()
        self.g = torch.empty(n, n_trees, dtype=f64, device=device)  # y - p
        self.h = torch.empty(n, n_trees, dtype=f64, device=device)  # p (1 - p)
        self.positive = targets.positive
        self.ones_at_positive = torch.ones(targets.positive.numel(), dtype=f64, device=device)
        self.one = torch.ones((), dtype=f64, device=device)
        scratch = torch.empty(max(n, n_test) * n_trees, dtype=f64, device=device)
        # Per group: k, raw scores, probabilities (contiguous pieces of the scratch), and
        # its views of g and h.
        self.by_group = [(k, raw_k, scratch[n * a:n * b].view(raw_k.shape),
                          self.g[:, a:b].view(n, -1, k), self.h[:, a:b].view(n, -1, k))
                         for (a, b, k), raw_k in zip(self.groups, self.raw_groups)]
        self.rounded = scratch[:n * n_trees].view(n, n_trees)
        self.leaf_step = scratch[:n * n_trees]
        self.leaf_step_groups = [self.leaf_step.view(n, n_trees)[:, a:b].view(n, -1, k)
                                 for a, b, k in self.groups]
        self.leaf_step_test = scratch[:n_test * n_trees]

    def gradients(self) -> None:
        """``g = y - p`` and ``h = p (1 - p)`` of the current scores."""
        for k, raw_k, p, g_k, h_k in self.by_group:
            if k == 1:  # sigmoid, as 1 / (1 + exp(-raw)): the same bits in any layout
                torch.neg(raw_k, out=p).exp_().add_(1).reciprocal_()
            else:  # softmax over the short last axis, written out: ~1.7x torch.softmax
                torch.sub(raw_k, raw_k.amax(dim=2, keepdim=True), out=p).exp_()
                p.div_(p.sum(dim=2, keepdim=True))
            torch.neg(p, out=g_k)
            torch.sub(self.one, p, out=h_k).mul_(p)
        self.g.view(-1).scatter_add_(0, self.positive, self.ones_at_positive)

    def rounded_gradients(self, bits: int) -> torch.Tensor:
        """The gradients as integer multiples of 2**-bits, in units of 2**-bits."""
        return torch.mul(self.g, 2.0 ** bits, out=self.rounded).round_()

    def add_leaf_steps(self, value: torch.Tensor, leaf: torch.Tensor,
                       leaf_test: torch.Tensor) -> None:
        """Add ``value`` (T * leaves,) of each row's leaf (global ids) to its scores."""
        torch.index_select(value, 0, leaf, out=self.leaf_step)
        for (_, raw_k, *_), step_k in zip(self.by_group, self.leaf_step_groups):
            raw_k += step_k
        self.raw_test += torch.index_select(value, 0, leaf_test,
                                            out=self.leaf_step_test).view(self.n_test, -1)

    def raw(self) -> torch.Tensor:
        return torch.cat([raw_k.view(self.n, -1) for raw_k in self.raw_groups], 1)


def fit_targets(y_train: torch.Tensor, *, binned: BinnedFeatures, onehot,
                counts: torch.Tensor, bits: int, x_test: torch.Tensor, n_features: int,
                n_estimators: int, learning_rate: float, max_depth: int, seed: int,
                progress: bool, stop: threading.Event | None = None,
                rows: RowCounts | None = None) -> GBTFit:
    """:func:`~disentangle_eval._gbt.fit_gbt_classifiers` of the targets ``y_train`` in
    one batched fit on the current thread, on the training features' ``binned`` columns,
    their ``onehot`` matrix and bin ``counts``, with gradients rounded to ``bits``
    fractional bits (``rows``: the samples the training rows stand for). Raises
    :class:`FitStopped` at the next stage once ``stop`` is set."""
    device = y_train.device
    n, n_test, d = y_train.shape[0], x_test.shape[0], binned.bins.shape[0]
    n_samples = n if rows is None else rows.n_samples
    weights = row_weights(n, device) if rows is None else rows.key_weights
    targets = _Targets(y_train, weights, None if rows is None else rows.counts, n_samples)
    n_trees = targets.n_trees
    scores = _Scores(targets, n, n_test)
    grower = TreeGrower(binned, onehot, counts, x_test[:, binned.active].contiguous(),
                        n_trees, max_depth)
    if d:
        ties = TieBreak(seed, targets.key, content_key(binned.bins, weights, n_samples),
                        max_depth, n_estimators)
    importance = torch.zeros(n_trees, max(d, 1), dtype=torch.float64, device=device)
    newton_leaf = targets.newton.repeat_interleave(2 ** max_depth)
    n_slots = n_trees * 2 ** max_depth
    sum_g = torch.empty(n_slots, dtype=torch.float64, device=device)
    sum_h = torch.empty(n_slots, dtype=torch.float64, device=device)

    for stage in tqdm(range(n_estimators), desc="DCI gradient boosting", unit="stage",
                      disable=None if progress else True, leave=False):
        if stop is not None and stop.is_set():
            raise FitStopped()
        scores.gradients()
        if d:
            grower.grow(scores.rounded_gradients(bits), ties.stage(stage), importance)
        else:
            grower.grow(None, None, importance)
        # Leaf values: one Newton step. scatter_add_ rather than index_add_: the same
        # sums, ~2x faster on CPU.
        leaf = grower.leaf_index()
        if rows is None:
            sum_g.zero_().scatter_add_(0, leaf, scores.g.view(-1))
            sum_h.zero_().scatter_add_(0, leaf, scores.h.view(-1))
        else:  # every sample in its own order: the sums of the written-out fit
            leaf_of = leaf.view(n, n_trees).index_select(0, rows.positions).view(-1)
            sum_g.zero_().scatter_add_(0, leaf_of, scores.g.index_select(0, rows.positions)
                                       .view(-1))
            sum_h.zero_().scatter_add_(0, leaf_of, scores.h.index_select(0, rows.positions)
                                       .view(-1))
        value = torch.where(sum_h.abs() < 1e-150, 0.0,
                            newton_leaf * sum_g / torch.where(sum_h == 0, 1.0, sum_h))
        scores.add_leaf_steps(value.mul_(learning_rate), leaf, grower.node_test.view(-1))

    # Importance per target: the sum over its trees, normalised.
    tree_target = torch.repeat_interleave(
        torch.tensor([b - a for a, b in targets.slices], device=device))
    imp = torch.zeros(len(targets.slices), n_features, dtype=torch.float64, device=device)
    if d:
        per_target = torch.zeros(len(targets.slices), d, dtype=torch.float64,
                                 device=device).index_add_(0, tree_target, importance[:, :d])
        imp[:, binned.active] = per_target.abs()
    total = imp.sum(1, keepdim=True)
    imp = torch.where(total > 0, imp / torch.where(total > 0, total, 1.0), 0.0)
    return GBTFit(importance=imp.T.contiguous(), predict_train=targets.predict(scores.raw()),
                  predict_test=targets.predict(scores.raw_test))
