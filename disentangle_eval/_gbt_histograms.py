"""Exact gradient and count histograms of the nodes of one tree level, for all trees.

For every tree ``t``, node ``m`` and (feature, bin) row ``r`` of the one-hot bin matrix
``B`` (:func:`~disentangle_eval._gbt_binning.one_hot_bins`, shape (R, n)):

    gradient sum  G[r, m, t] = sum_i B[r, i] * mask[i, m, t] * q[i, t]
    count         C[r, m, t] = sum_i B[r, i] * mask[i, m, t]

with ``q`` the rounded gradients (integers in units of 2**-bits) and ``mask`` the 0/1
membership of row ``i`` in node ``m`` of tree ``t``. Both are sparse-dense products
``B @ dense`` whose sums are exact integers, so their order does not matter.

Only the left children of a level are summed here; the caller takes the right
children as parent minus left (on cumulative sums). The dense operands are stored in
blocks of at most about 48 trees, each a contiguous (n, block) matrix, and the one-hot
matrix in blocks of rows (:func:`~disentangle_eval._gbt_binning.one_hot_bins`): each
block of rows is masked, packed, multiplied and summed in turn while its rows of the
operands are in cache, so that the cost per row does not grow with the number of rows.
The count products carry ``pack`` trees per column, their 0/1 masks as
base-2**count_bits digits (a bin holds fewer than 2**count_bits rows, so digit sums do
not carry), and are unpacked after.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["Histograms", "HistogramPlan"]


@dataclass(frozen=True)
class _RowBlock:
    """One block of training rows of a level's histograms (views made once per fit)."""

    first: bool                 # the first block writes the outputs, the others add
    onehot: torch.Tensor        # (R, rows of the block), sparse CSR
    masks: list                 # (node ids, id of the node to sum, 0/1 mask out)
    packing: list               # (masks (rows * columns, pack), packed column)
    masks_grouped: torch.Tensor | None   # (nodes, blocks, rows, columns, pack)
    packed_masks: torch.Tensor | None    # (nodes, blocks, rows, columns)
    count_products: list        # (packed masks, output) pairs
    operands: torch.Tensor | None        # (nodes, blocks, rows, block): masks
    gradients: torch.Tensor     # (blocks, rows, block): rounded gradients
    products: list              # (masked gradients, output) pairs


@dataclass(frozen=True)
class HistogramPlan:
    """The views that one level's histogram call works on, made once per fit.

    ``gradient_copies`` copy each tree block's sums into the caller's (R, nodes, T)
    float64 output. The count fields are ``None`` at the root, which has no masks.
    """

    root: bool
    row_blocks: list
    gradient_copies: list
    packed_sums: torch.Tensor | None = None         # count product outputs, (R, ...)
    packed_int: torch.Tensor | None = None
    digits: torch.Tensor | None = None
    counts_by_tree: torch.Tensor | None = None      # digits as (R, nodes, T)
    out_counts: torch.Tensor | None = None


class Histograms:
    """Histogram products of ``n_trees`` trees on the one-hot bin matrix.

    Parameters
    ----------
    onehot : list of (first row, end row, sparse CSR tensor of shape (R, rows))
        The one-hot bin matrix in blocks of rows, float32 or float64
        (:func:`~disentangle_eval._gbt_binning.one_hot_bins`).
    n_trees : int
    largest_bin : int
        Most training rows in one bin (sets the count digits' width).
    max_parents : int
        Most parents of a level below the root (2 ** (max_depth - 2)).
    block_columns : int
        Most trees per dense operand block.
    """

    def __init__(self, onehot: list, n_trees: int, largest_bin: int, max_parents: int,
                 block_columns: int = 48):
        rows, n = onehot[0][2].shape[0], onehot[-1][1]
        device, dtype = onehot[0][2].device, onehot[0][2].dtype
        self.onehot, self.n_rows, self.n_trees = onehot, n, n_trees
        # Packed count sums are integers below 2**24 (float32) or 2**53 (float64).
        self.count_bits = max(1, int(largest_bin).bit_length())
        mantissa = 24 if dtype == torch.float32 else 53
        self.pack = max(1, min(8, mantissa // self.count_bits))
        self.n_blocks = max(1, -(-n_trees // block_columns))
        block = -(-n_trees // self.n_blocks)
        self.block = block = -(-block // self.pack) * self.pack
        # Trees are padded to n_blocks * block with zero gradients and zero masks.
        self.n_trees_pad = self.n_blocks * block
        columns = block // self.pack
        self.digit_dtype = torch.int32 if dtype == torch.float32 else torch.int64
        self.digit_shifts = self.count_bits * torch.arange(self.pack, device=device,
                                                           dtype=self.digit_dtype)
        # Rounded gradients, block-major.
        self.gradients = torch.zeros(self.n_blocks, n, block, dtype=dtype, device=device)
        # The nodes' 0/1 masks, packed into the count operands, then multiplied by the
        # gradients in place. Zeros: padded trees' columns are never written and must
        # stay zero masks.
        self.operands = torch.zeros(max_parents, self.n_blocks, n, block, dtype=dtype,
                                    device=device)
        self.packed_masks = torch.empty(max_parents, self.n_blocks, n, columns, dtype=dtype,
                                        device=device)
        self.gradient_sums = torch.empty(max_parents, self.n_blocks, rows, block, dtype=dtype,
                                         device=device)
        self.packed_sums = torch.empty(max_parents, self.n_blocks, rows, columns, dtype=dtype,
                                       device=device)
        self.packed_int = torch.empty(self.packed_sums.numel(), dtype=self.digit_dtype,
                                      device=device)
        self.digits = torch.empty(self.packed_int.numel() * self.pack, dtype=self.digit_dtype,
                                  device=device)
        # Packing ``pack`` adjacent masks into digits is one small matrix product (a third
        # of the time of strided adds), exact unless float32 products may run in reduced
        # precision (TF32, bfloat16); then the adds are used.
        self.digit_weights = (2.0 ** (self.count_bits * torch.arange(self.pack, device=device))
                              ).to(dtype).view(self.pack, 1)
        self.pack_by_product = (dtype == torch.float64
                                or torch.get_float32_matmul_precision() == "highest")

    def set_gradients(self, rounded: torch.Tensor) -> None:
        """Store the rounded gradients (n, n_trees) in the blocks."""
        for s in range(self.n_blocks):
            start = s * self.block
            width = min(self.block, self.n_trees - start)
            self.gradients[s, :, :width].copy_(rounded[:, start:start + width])

    def plan(self, out_gradients: torch.Tensor, out_counts: torch.Tensor | None = None,
             node: torch.Tensor | None = None, summed: torch.Tensor | None = None
             ) -> HistogramPlan:
        """The plan of one level, written into ``out_gradients`` (R, nodes, T) float64 and
        ``out_counts`` (R, nodes, T) float32, the caller's cumulative-sum buffers.

        The nodes summed are, for each tree ``t``, those of id ``summed[m, t]`` (nodes, T)
        in the training rows' node ids ``node`` (n, T); without them, the root (all rows,
        no counts).
        """
        rows = self.onehot[0][2].shape[0]
        root = node is None
        nodes = 1 if root else summed.shape[0]
        operand = self.gradients[None] if root else self.operands[:nodes]
        sums = self.gradient_sums[:nodes]
        copies = []
        for s in range(self.n_blocks):
            start = s * self.block
            width = min(self.block, self.n_trees - start)
            copies.append((sums[:, s, :, :width].permute(1, 0, 2),
                           out_gradients[:, :, start:start + width]))
        row_blocks = [self._row_block(k, operand, sums, node, summed)
                      for k in range(len(self.onehot))]
        if root:
            return HistogramPlan(root=True, row_blocks=row_blocks, gradient_copies=copies)
        packed_shape = (rows, nodes, self.n_blocks, self.block // self.pack, 1)
        packed_int = self.packed_int[:math.prod(packed_shape)].view(packed_shape)
        digits = self.digits[:packed_int.numel() * self.pack].view(*packed_shape[:-1],
                                                                   self.pack)
        return HistogramPlan(
            root=False, row_blocks=row_blocks, gradient_copies=copies,
            packed_sums=self.packed_sums[:nodes].permute(2, 0, 1, 3)[..., None],
            packed_int=packed_int, digits=digits,
            counts_by_tree=digits.view(rows, nodes, self.n_trees_pad)[:, :, :self.n_trees],
            out_counts=out_counts)

    def _row_block(self, k: int, operand, sums, node, summed) -> _RowBlock:
        start, stop, onehot = self.onehot[k]
        rows = slice(start, stop)
        pairs = [(m, s) for m in range(operand.shape[0]) for s in range(self.n_blocks)]
        products = [(operand[m, s, rows], sums[m, s]) for m, s in pairs]
        if node is None:
            return _RowBlock(first=k == 0, onehot=onehot, masks=[], packing=[],
                             masks_grouped=None, packed_masks=None, count_products=[],
                             operands=None, gradients=self.gradients[:, rows],
                             products=products)
        packed_masks = self.packed_masks[:operand.shape[0], :, rows]
        masks = []
        for m, s in pairs:
            trees = slice(s * self.block, min((s + 1) * self.block, self.n_trees))
            masks.append((node[rows, trees], summed[m, trees],
                          operand[m, s, rows, :trees.stop - trees.start]))
        return _RowBlock(
            first=k == 0, onehot=onehot, masks=masks,
            packing=[(operand[m, s, rows].view(-1, self.pack),
                      packed_masks[m, s].view(-1, 1)) for m, s in pairs],
            masks_grouped=operand[:, :, rows].view(*packed_masks.shape, self.pack),
            packed_masks=packed_masks,
            count_products=[(packed_masks[m, s], self.packed_sums[m, s]) for m, s in pairs],
            operands=operand[:, :, rows], gradients=self.gradients[:, rows],
            products=products)

    def __call__(self, plan: HistogramPlan) -> None:
        """Sum the gradients (and, below the root, the counts) of the plan's nodes."""
        for block in plan.row_blocks:
            if not plan.root:
                for node_ids, summed_id, mask in block.masks:
                    torch.eq(node_ids, summed_id, out=mask)
                if self.pack_by_product:
                    for masks, packed in block.packing:
                        torch.mm(masks, self.digit_weights, out=packed)
                else:
                    block.packed_masks.copy_(block.masks_grouped[..., 0])
                    for i in range(1, self.pack):
                        block.packed_masks.add_(block.masks_grouped[..., i],
                                                alpha=2.0 ** (self.count_bits * i))
                _products(block, block.count_products)
                block.operands.mul_(block.gradients)                   # masked gradients
            _products(block, block.products)
        # (nodes, S, R, W) -> (R, nodes, T) in float64, still in integer units: scaling
        # by a power of two would change no split and, after normalisation, no importance.
        for source, target in plan.gradient_copies:
            target.copy_(source)
        if plan.root:
            return
        plan.packed_int.copy_(plan.packed_sums)
        # Unpacked in integers: CUDA has no bitwise kernels that write float outputs.
        torch.bitwise_right_shift(plan.packed_int, self.digit_shifts, out=plan.digits)
        plan.digits.bitwise_and_(2 ** self.count_bits - 1)
        plan.out_counts.copy_(plan.counts_by_tree)


def _products(block: _RowBlock, pairs: list) -> None:
    """``out (+)= onehot @ operand`` for the block's (operand, out) pairs."""
    for operand, out in pairs:
        if block.first:
            torch.mm(block.onehot, operand, out=out)
        else:
            out.addmm_(block.onehot, operand)
