"""Split search of the tree learner: the best split of every node of a level, for all trees.

From the cumulative histograms of a level (gradient sums and counts per feature, bin,
node and tree) the split "bin <= b goes left" of largest squared-error decrease is
chosen for every node: scikit-learn's ``friedman_mse`` choice for unit weights. Its
threshold is scikit-learn's midpoint between the training values on either side.

The histogram sums are exact, so two features that induce the same partition of a node
have bitwise equal scores: a tie. scikit-learn breaks it by drawing a random feature
order per node; here a hash of the seed, the stage, the node, and the *content* of the
feature column and of the tree's target decides (:class:`TieBreak`), so permuting the
latents or relabelling a factor's classes changes no choice.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._gbt_binning import BinnedFeatures

__all__ = ["SplitSearch", "TieBreak", "row_weights", "content_key", "MASK31"]

MASK31 = 0x7FFFFFFF


def _mix(h: torch.Tensor, c) -> torch.Tensor:
    """Hash-combine 31-bit integers (two LCG rounds; products stay below 2**62)."""
    h = ((h ^ c) * 1103515245 + 12345) & MASK31
    return ((h ^ (h >> 16)) * 1103515245 + 12345) & MASK31


def row_weights(n: int, device) -> torch.Tensor:
    """Fixed pseudo-random weights of the rows, for content keys."""
    generator = torch.Generator(device="cpu").manual_seed(20180430)
    return torch.randint(1, 2 ** 23, (n,), generator=generator).to(device)


def content_key(rows: torch.Tensor, weights: torch.Tensor, n: int | None = None
                ) -> torch.Tensor:
    """A 31-bit key of each row of an integer matrix (values < 2**8 keep sums exact).

    ``n``: the number of samples the columns stand for (default: the columns; a column
    standing for repeated samples carries the sum of their ``weights``).
    """
    n = rows.shape[1] if n is None else n
    return (((rows & 0xFF) * weights).sum(1) + n) & MASK31


class TieBreak:
    """Priority of each feature at each (stage, level, node, tree): the feature of highest
    priority wins among equally good ones.

    ``target_key`` (T,) and ``feature_key`` (d,) are content keys of each tree's target
    and of each feature's bins. Priorities are hashed for ``chunk`` stages at a time.
    """

    def __init__(self, seed: int, target_key: torch.Tensor, feature_key: torch.Tensor,
                 max_depth: int, n_estimators: int, chunk: int = 25):
        device = target_key.device
        self.seed_key = _mix(torch.tensor(int(seed) & MASK31, device=device), 0x5EED)
        self.target_key, self.feature_key = target_key, feature_key
        self.max_depth, self.n_estimators, self.chunk = max_depth, n_estimators, chunk
        self._table = None

    def stage(self, stage: int) -> torch.Tensor:
        """Priorities of one stage, (d, levels, T, 2 ** (levels - 1)); level ``l`` uses
        the first 2 ** l nodes."""
        if stage % self.chunk == 0 or self._table is None:
            first = stage - stage % self.chunk
            stages = torch.arange(first, min(first + self.chunk, self.n_estimators),
                                  device=self.target_key.device)
            self._table = self._priorities(stages)
        return self._table[:, stage % self.chunk]

    def _priorities(self, stages: torch.Tensor) -> torch.Tensor:
        """(d, stages, levels, T, nodes) table: a hash of the seed, the stage, the level,
        the node, and the tree's target and feature contents."""
        device = stages.device
        n_nodes = 2 ** torch.arange(self.max_depth, device=device)            # per level
        by_level = _mix(_mix(self.seed_key, stages[:, None] * 64 + n_nodes)[:, :, None],
                        self.target_key)                                     # (S, L, T)
        by_node = by_level[..., None] + torch.arange(2 ** (self.max_depth - 1), device=device)
        return _mix(by_node, self.feature_key[:, None, None, None, None])


@dataclass(frozen=True)
class _LevelConstants:
    """Index tensors of one level's split search (they depend on its shape only)."""

    cells: torch.Tensor            # flat offsets of (bin, node, tree) in (d, nb, nodes, T)
    node_index: torch.Tensor       # (nodes, T)
    tree_index: torch.Tensor       # (nodes, T)
    tree_index_by_tree: torch.Tensor   # (T, nodes)


def _level_constants(nb: int, n_nodes: int, n_trees: int, device) -> _LevelConstants:
    cell = (torch.arange(n_nodes, device=device)[:, None] * n_trees
            + torch.arange(n_trees, device=device))                          # (nodes, T)
    tree_index = torch.arange(n_trees, device=device)[None, :].expand(n_nodes, -1)
    return _LevelConstants(
        cells=cell[:, :, None] + torch.arange(nb, device=device) * (n_nodes * n_trees),
        node_index=torch.arange(n_nodes, device=device)[:, None].expand(-1, n_trees),
        tree_index=tree_index, tree_index_by_tree=tree_index.T.contiguous())


class SplitSearch:
    """Best splits of the levels of ``n_trees`` trees of depth ``max_depth``.

    ``root_cum_counts`` (d, nb, 1, T) float32: the cumulative counts of the root, the
    same at every stage, so their float64 copy and split denominators are made once.
    """

    def __init__(self, binned: BinnedFeatures, n_trees: int, max_depth: int,
                 root_cum_counts: torch.Tensor):
        d, nb = binned.bins.shape[0], binned.n_bins
        device = binned.bins.device
        self.binned = binned
        cells = d * nb * 2 ** (max_depth - 1) * n_trees                 # the deepest level
        dev = torch.empty(cells, dtype=torch.float64, device=device)
        score = torch.empty(cells, dtype=torch.float32, device=device)
        denominator = torch.empty(cells, dtype=torch.float32, device=device)
        shapes = [(d, nb, 2 ** level, n_trees) for level in range(max_depth)]
        # Per level: views of the deviations, scores and denominators (d, nb, nodes, T).
        self.buffers = [(dev[:math.prod(s)].view(s), score[:math.prod(s)].view(s),
                         denominator[:math.prod(s)].view(s)) for s in shapes]
        self.constants = [_level_constants(nb, 2 ** level, n_trees, device)
                          for level in range(max_depth)]
        self.root_counts = root_cum_counts.to(torch.float64)
        self.root_denominator = (root_cum_counts[:, -1:] - root_cum_counts).mul_(
            root_cum_counts).clamp_(min=0.25)

    def __call__(self, level: int, cum_g: torch.Tensor, cum_c: torch.Tensor,
                 priority: torch.Tensor, importance: torch.Tensor):
        """Best split of every (node, tree) of ``level`` from its cumulative histograms
        (d, nb, nodes, T) of the gradients (float64, in any fixed power-of-two unit) and
        counts (float32, exact); adds each split's gain to ``importance`` (T, d) (in the
        square of that unit: only normalised importances are used).

        Returns the feature (nodes, T), the value threshold (nodes, T; +inf: no split)
        and the bin threshold (nodes, T; rows with a larger bin go right).
        """
        d, nb, n_nodes, n_trees = cum_g.shape
        f64 = torch.float64
        dev, score, denom = self.buffers[level]
        const = self.constants[level]
        # For "bin <= b goes left" the squared-error decrease is n dev^2 / (n_left n_right),
        # dev = sum_left - n_left * mean: no cancellation, so it is ranked in float32
        # (bitwise equal inputs, e.g. two features inducing the same partition, give equal
        # scores).
        tot_c = cum_c[:, -1:]
        mean = cum_g[:, -1:] / tot_c.to(f64).clamp(min=1)
        if level == 0:
            torch.addcmul(cum_g, self.root_counts, mean, value=-1, out=dev)
            denom = self.root_denominator
        else:
            dev.copy_(cum_c)  # the counts in float64 first: mixed-dtype addcmul is ~4x slower
            torch.addcmul(cum_g, dev, mean, value=-1, out=dev)
            torch.sub(tot_c, cum_c, out=denom).mul_(cum_c).clamp_(min=0.25)
        score.copy_(dev).square_().div_(denom)
        # Maxima without indices (~10x faster than max(dim) with them); the best bin is
        # then looked up for the chosen feature only.
        best_score = score.amax(1)                                           # (d, nodes, T)
        feat = torch.where(best_score == best_score.amax(0), priority, -1).argmax(0)
        # Scores and cumulative counts of the chosen feature, (nodes, T, nb).
        at = torch.add(const.cells, feat[:, :, None], alpha=nb * n_nodes * n_trees)
        at = at.view(-1)  # index_select on the flat views: as take, ~2x faster
        b = score.view(-1).index_select(0, at).view(n_nodes, n_trees, nb).argmax(
            2, keepdim=True)                                     # first best: lowest bin
        cc = cum_c.view(-1).index_select(0, at).view(n_nodes, n_trees, nb)
        n_left = cc.gather(2, b)                                             # (nodes, T, 1)
        n_node = cc[:, :, -1:]
        split = (n_left >= 1) & (n_left < n_node)
        # Last non-empty bin on the left, first non-empty bin on the right (in the node).
        b_left = torch.searchsorted(cc, n_left, side="left")
        b_right = torch.searchsorted(cc, n_left, side="right").clamp_(max=nb - 1)
        n_left, n_node = n_left.to(f64), n_node.to(f64)
        dev_best = dev[feat, b.squeeze(2), const.node_index, const.tree_index].unsqueeze(2)
        gain = torch.where(split, n_node * dev_best.square()
                           / (n_left * (n_node - n_left)).clamp_(min=1), 0.0).squeeze(2)
        split, b_left, b_right = split.squeeze(2), b_left.squeeze(2), b_right.squeeze(2)
        # Accumulated tree by tree, node by node (a fixed order of the float64 sums).
        importance.index_put_((const.tree_index_by_tree, feat.T.contiguous()),
                              gain.T.contiguous(), accumulate=True)
        lo = self.binned.bin_max[feat, b_left]
        hi = self.binned.bin_min[feat, b_right]
        threshold = lo / 2 + hi / 2                                  # scikit-learn's midpoint
        threshold = torch.where(threshold == hi, lo, threshold)
        threshold = torch.where(split, threshold, math.inf)
        bin_threshold = torch.where(split, b_left, nb - 1)
        return feat, threshold, bin_threshold
