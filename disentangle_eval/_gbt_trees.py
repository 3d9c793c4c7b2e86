"""Growth of one boosting stage's trees, level by level, and the routing of rows down them.

All trees of a stage (one per target and class) grow together. At each level:

1. histograms: the gradient sums and counts per (feature, bin) of every node. At the
   root they cover all rows; below, only the left children are summed
   (:class:`~disentangle_eval._gbt_histograms.Histograms`) and the right children's
   cumulative histograms are the parent's minus the left child's (exact sums);
2. split search (:class:`~disentangle_eval._gbt_splits.SplitSearch`): the best feature
   and threshold of every node; a node without a split sends all its rows left;
3. routing: every training row (by bin) and test row (by value) moves to the child of
   its node, ``2 * node + (goes right)``.

Node ids are global, ``tree * 2**level + index within the level``, so after the last
level they index the leaves of all trees at once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._gbt_binning import BinnedFeatures
from ._gbt_histograms import Histograms, HistogramPlan
from ._gbt_splits import SplitSearch

__all__ = ["TreeGrower"]


@dataclass(frozen=True)
class _Level:
    """Buffers and views of one level below the root (made once per fit)."""

    plan: HistogramPlan        # the left children's histograms, into the cumulative buffers
    cum_g_left: torch.Tensor   # (d, nb, parents, T) views of this level's cumulative
    cum_g_right: torch.Tensor  # histograms: left children summed in place, right
    cum_c_left: torch.Tensor   # children taken as parent minus left
    cum_c_right: torch.Tensor
    cum_g: torch.Tensor        # (d, nb, nodes, T) float64, gradient sums in integer units
    cum_c: torch.Tensor        # (d, nb, nodes, T) float32, counts


@dataclass(frozen=True)
class _RouteBuffers:
    """Temporaries of one routing pass over (rows, trees)."""

    feature_of_row: torch.Tensor     # (rows * T,) int64: split feature of each row's node
    threshold_of_row: torch.Tensor   # (rows * T,): its threshold
    value_of_row: torch.Tensor       # (rows, T): the row's value of that feature
    goes_right: torch.Tensor         # (rows, T) int32 (like the node ids: no cast copy)


class TreeGrower:
    """Grows ``n_trees`` trees of depth ``max_depth`` on binned training features.

    Parameters
    ----------
    binned : BinnedFeatures
        The training rows' bins.
    onehot : sparse CSR tensor or None
        :func:`~disentangle_eval._gbt_binning.one_hot_bins` of ``binned`` (None without
        active features).
    bin_counts : torch.Tensor of shape (d, nb), int64
    x_test : torch.Tensor of shape (n_test, d), float32
        The test rows' values of the active features.
    n_trees, max_depth : int

    After :meth:`grow`, ``node`` (n, T) and ``node_test`` (n_test, T) hold each row's leaf
    as a global node id ``tree * 2**max_depth + leaf``.
    """

    def __init__(self, binned: BinnedFeatures, onehot, bin_counts: torch.Tensor,
                 x_test: torch.Tensor, n_trees: int, max_depth: int):
        d, n = binned.bins.shape
        nb, n_test = binned.n_bins, x_test.shape[0]
        device = binned.bins.device
        self.d, self.max_depth = d, max_depth
        self.tree_ids = torch.arange(n_trees, device=device, dtype=torch.int32)
        self.node = torch.empty(n, n_trees, dtype=torch.int32, device=device)
        self.node_test = torch.empty(n_test, n_trees, dtype=torch.int32, device=device)
        # Split feature of each row while routing, then each training row's leaf as int64
        # (the index type of scatter_add_), see :meth:`leaf_index`.
        self._row_index = torch.empty(max(n, n_test) * n_trees, dtype=torch.int64,
                                      device=device)
        if not d:
            return
        self.bins = binned.bins.T.to(torch.uint8 if nb <= 256 else torch.int64).contiguous()
        self.x_test = x_test
        goes_right = torch.empty(max(n, n_test) * n_trees, dtype=torch.int32, device=device)
        self._route_train = _RouteBuffers(
            self._row_index[:n * n_trees],
            torch.empty(n * n_trees, dtype=self.bins.dtype, device=device),
            torch.empty(n, n_trees, dtype=self.bins.dtype, device=device),
            goes_right[:n * n_trees].view(n, n_trees))
        self._route_test = _RouteBuffers(
            self._row_index[:n_test * n_trees],
            torch.empty(n_test * n_trees, dtype=torch.float32, device=device),
            torch.empty(n_test, n_trees, dtype=torch.float32, device=device),
            goes_right[:n_test * n_trees].view(n_test, n_trees))

        largest_bin = int(bin_counts.max())
        self.histograms = Histograms(onehot, n_trees, largest_bin,
                                     max_parents=max(1, 2 ** (max_depth - 2)))
        # The root's cumulative counts are the same at every stage.
        self.root_cum_c = bin_counts.to(torch.float32).view(d, nb, 1, 1).cumsum(1).expand(
            d, nb, 1, n_trees).contiguous()
        self.splits = SplitSearch(binned, n_trees, max_depth, self.root_cum_c)
        # Cumulative histograms: two buffers of the deepest level's size, used by the
        # levels in turn (a level reads its parent's and writes its own).
        cells = d * nb * 2 ** (max_depth - 1) * n_trees
        self._cum_g = [torch.empty(cells, dtype=torch.float64, device=device) for _ in "ab"]
        self._cum_c = [torch.empty(cells, dtype=torch.float32, device=device) for _ in "ab"]
        self.root_cum_g = self._cum_g[0][:d * nb * n_trees].view(d, nb, 1, n_trees)
        self.root_plan = self.histograms.plan(self.root_cum_g.view(d * nb, 1, n_trees))
        self.levels = [self._level(level) for level in range(1, max_depth)]

    def _level(self, level: int) -> _Level:
        d, nb = self.d, self.root_cum_g.shape[1]
        n_trees = self.tree_ids.numel()
        n_nodes, parents = 2 ** level, 2 ** (level - 1)
        shape = (d, nb, parents, 2, n_trees)
        cum_g = self._cum_g[level % 2][:math.prod(shape)].view(shape)
        cum_c = self._cum_c[level % 2][:math.prod(shape)].view(shape)
        # Global ids of the left children (even local ids) of each parent, (parents, T).
        left_ids = ((self.tree_ids * n_nodes)[None, :]
                    + 2 * torch.arange(parents, device=cum_g.device,
                                       dtype=torch.int32)[:, None])
        plan = self.histograms.plan(cum_g[:, :, :, 0].view(d * nb, parents, n_trees),
                                    cum_c[:, :, :, 0].view(d * nb, parents, n_trees),
                                    self.node, left_ids)
        return _Level(plan=plan,
                      cum_g_left=cum_g[:, :, :, 0], cum_g_right=cum_g[:, :, :, 1],
                      cum_c_left=cum_c[:, :, :, 0], cum_c_right=cum_c[:, :, :, 1],
                      cum_g=cum_g.view(d, nb, n_nodes, n_trees),
                      cum_c=cum_c.view(d, nb, n_nodes, n_trees))

    def grow(self, rounded_gradients: torch.Tensor, priorities: torch.Tensor | None,
             importance: torch.Tensor) -> None:
        """Grow one stage's trees on the rounded gradients (n, T) (integers), with the tie
        priorities of the stage (d, levels, T, nodes); add the splits' gains to
        ``importance`` (T, d) and leave every row's leaf in ``node`` / ``node_test``."""
        if not self.d:  # no usable feature: every tree is a single leaf
            leaves = self.tree_ids * 2 ** self.max_depth
            self.node.copy_(leaves.expand_as(self.node))
            self.node_test.copy_(leaves.expand_as(self.node_test))
            return
        self.histograms.set_gradients(rounded_gradients)
        for level in range(self.max_depth):
            if level == 0:
                self.histograms(self.root_plan)
                cum_g = self.root_cum_g.cumsum_(1)
                cum_c = self.root_cum_c
            else:
                lv = self.levels[level - 1]
                self.histograms(lv.plan)
                lv.cum_g_left.cumsum_(1)
                lv.cum_c_left.cumsum_(1)
                torch.sub(cum_g, lv.cum_g_left, out=lv.cum_g_right)
                torch.sub(cum_c, lv.cum_c_left, out=lv.cum_c_right)
                cum_g, cum_c = lv.cum_g, lv.cum_c
            priority = priorities[:, level, :, :2 ** level].transpose(1, 2)   # (d, nodes, T)
            feat, threshold, bin_threshold = self.splits(level, cum_g, cum_c, priority,
                                                         importance)
            # Tables per global node id (tree-major), then one routing pass per row set.
            feat = feat.T.reshape(-1)
            _route(self.node, self.bins, feat, bin_threshold.T.reshape(-1).to(self.bins.dtype),
                   level, self.tree_ids, self._route_train)
            _route(self.node_test, self.x_test, feat, _floor_float32(threshold.T.reshape(-1)),
                   level, self.tree_ids, self._route_test)

    def leaf_index(self) -> torch.Tensor:
        """The training rows' leaves (n * T,) as int64, in the routing's feature buffer
        (free once the trees are grown)."""
        index = self._row_index[:self.node.numel()]
        index.copy_(self.node.view(-1))
        return index


def _route(node, values, feat, threshold, level, tree_ids, buffers: _RouteBuffers) -> None:
    """Send rows one level down: ``node`` (n, T) int32 global node ids, updated in place
    to the child's id (at level 0 the ids are the tree ids and ``node`` is only
    written). A row goes right when its value of the node's feature exceeds the node's
    threshold; ``values`` (n, d) are training bins or test values, ``feat`` and
    ``threshold`` (T * nodes,) tables per global node id.
    """
    n, n_trees = node.shape
    if level == 0:  # the node id is the tree id
        feat_of_row, threshold_of_row = feat.expand(n, n_trees), threshold
    else:
        ids = node.view(-1)
        feat_of_row = torch.index_select(feat, 0, ids, out=buffers.feature_of_row)
        threshold_of_row = torch.index_select(threshold, 0, ids, out=buffers.threshold_of_row)
        feat_of_row = feat_of_row.view(n, n_trees)
        threshold_of_row = threshold_of_row.view(n, n_trees)
    value = torch.gather(values, 1, feat_of_row, out=buffers.value_of_row)
    right = torch.gt(value, threshold_of_row, out=buffers.goes_right)
    torch.add(right, tree_ids if level == 0 else node, alpha=2, out=node)


def _floor_float32(x: torch.Tensor) -> torch.Tensor:
    """The largest float32 <= each float64 value: for a float32 v, v > x iff v > floor.
    Test values are float32 (as scikit-learn's trees see them), so comparing them in
    float32 with these thresholds decides exactly as in float64."""
    down = x.to(torch.float32)
    return torch.where(down.to(x.dtype) > x, torch.nextafter(down, down.new_tensor(-math.inf)),
                       down)
