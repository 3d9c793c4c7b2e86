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
blocks of at most about 48 trees, each a contiguous (n, block) matrix, so that every
product has a cache-sized operand and a preallocated output. The count products carry
``pack`` trees per column, their 0/1 masks as base-2**count_bits digits (a bin holds
fewer than 2**count_bits rows, so digit sums do not carry), and are unpacked after.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["Histograms", "HistogramPlan"]


@dataclass(frozen=True)
class HistogramPlan:
    """The views that one level's histogram call works on, made once per fit.

    ``products`` and ``count_products`` are (dense operand, output) pairs of the sparse
    products; ``gradient_copies`` copy each block's sums into the caller's (R, nodes, T)
    float64 output. The count fields are ``None`` at the root, which has no masks.
    """

    products: list
    gradient_copies: list
    operands: torch.Tensor | None = None
    masks_by_pack: torch.Tensor | None = None       # (masks / pack, pack)
    masks_grouped: torch.Tensor | None = None       # (nodes, blocks, n, columns, pack)
    packed_masks: torch.Tensor | None = None        # (nodes, blocks, n, columns)
    packed_column: torch.Tensor | None = None       # the same as one column
    count_products: list | None = None
    packed_sums: torch.Tensor | None = None         # count product outputs, (R, ...)
    packed_int: torch.Tensor | None = None
    digits: torch.Tensor | None = None
    counts_by_tree: torch.Tensor | None = None      # digits as (R, nodes, T)
    out_counts: torch.Tensor | None = None


class Histograms:
    """Histogram products of ``n_trees`` trees on the one-hot matrix ``onehot`` (R, n).

    Parameters
    ----------
    onehot : sparse CSR tensor of shape (R, n), float32 or float64
    n_trees : int
    largest_bin : int
        Most training rows in one bin (sets the count digits' width).
    max_parents : int
        Most parents of a level below the root (2 ** (max_depth - 2)).
    block_columns : int
        Most trees per dense operand block.
    """

    def __init__(self, onehot: torch.Tensor, n_trees: int, largest_bin: int,
                 max_parents: int, block_columns: int = 48):
        rows, n = onehot.shape
        device, dtype = onehot.device, onehot.dtype
        self.onehot = onehot
        self.n_trees = n_trees
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
        # The caller writes the left children's 0/1 masks here; they are packed into the
        # count operands, then multiplied by the gradients in place. Zeros: padded trees'
        # columns are never written and must stay zero masks.
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

    def mask_views(self, parents: int) -> list[list[tuple[int, torch.Tensor]]]:
        """Per parent, per block: (first tree, (n, trees of the block) view) into which the
        caller writes the 0/1 masks of that parent's left child."""
        return [[(s * self.block,
                  self.operands[m, s, :, :min(self.block, self.n_trees - s * self.block)])
                 for s in range(self.n_blocks)] for m in range(parents)]

    def plan(self, parents: int | None, out_gradients: torch.Tensor,
             out_counts: torch.Tensor | None = None) -> HistogramPlan:
        """The plan of one level: ``parents`` left children (``None``: the root, all rows,
        no counts), written into ``out_gradients`` (R, nodes, T) float64 and
        ``out_counts`` (R, nodes, T) float32, the caller's cumulative-sum buffers."""
        rows, n = self.onehot.shape
        root = parents is None
        nodes = 1 if root else parents
        operand = self.gradients[None] if root else self.operands[:nodes]
        sums = self.gradient_sums[:nodes]
        products = [(operand[m, s], sums[m, s])
                    for m in range(nodes) for s in range(self.n_blocks)]
        copies = []
        for s in range(self.n_blocks):
            start = s * self.block
            width = min(self.block, self.n_trees - start)
            copies.append((sums[:, s, :, :width].permute(1, 0, 2),
                           out_gradients[:, :, start:start + width]))
        if root:
            return HistogramPlan(products=products, gradient_copies=copies)
        columns = self.block // self.pack
        packed_masks = self.packed_masks[:nodes]
        packed_sums = self.packed_sums[:nodes]
        packed_shape = (rows, nodes, self.n_blocks, columns, 1)
        packed_int = self.packed_int[:math.prod(packed_shape)].view(packed_shape)
        digits = self.digits[:packed_int.numel() * self.pack].view(
            rows, nodes, self.n_blocks, columns, self.pack)
        return HistogramPlan(
            products=products, gradient_copies=copies, operands=operand,
            masks_by_pack=operand.view(-1, self.pack),
            masks_grouped=operand.view(nodes, self.n_blocks, n, columns, self.pack),
            packed_masks=packed_masks, packed_column=packed_masks.view(-1, 1),
            count_products=[(packed_masks[m, s], packed_sums[m, s])
                            for m in range(nodes) for s in range(self.n_blocks)],
            packed_sums=packed_sums.permute(2, 0, 1, 3)[..., None],
            packed_int=packed_int, digits=digits,
            counts_by_tree=digits.view(rows, nodes, self.n_trees_pad)[:, :, :self.n_trees],
            out_counts=out_counts)

    def __call__(self, plan: HistogramPlan) -> None:
        """Sum the gradients (and, below the root, the counts) of the plan's nodes, whose
        masks the caller has written into :meth:`mask_views`."""
        onehot = self.onehot
        root = plan.count_products is None
        if not root:
            if self.pack_by_product:
                torch.mm(plan.masks_by_pack, self.digit_weights, out=plan.packed_column)
            else:
                plan.packed_masks.copy_(plan.masks_grouped[..., 0])
                for i in range(1, self.pack):
                    plan.packed_masks.add_(plan.masks_grouped[..., i],
                                           alpha=2.0 ** (self.count_bits * i))
            for operand, sums in plan.count_products:
                torch.mm(onehot, operand, out=sums)
            plan.operands.mul_(self.gradients)                       # masked gradients
        for operand, sums in plan.products:
            torch.mm(onehot, operand, out=sums)
        # (nodes, S, R, W) -> (R, nodes, T) in float64, still in integer units: scaling
        # by a power of two would change no split and, after normalisation, no importance.
        for source, target in plan.gradient_copies:
            target.copy_(source)
        if root:
            return
        plan.packed_int.copy_(plan.packed_sums)
        # Unpacked in integers: CUDA has no bitwise kernels that write float outputs.
        torch.bitwise_right_shift(plan.packed_int, self.digit_shifts, out=plan.digits)
        plan.digits.bitwise_and_(2 ** self.count_bits - 1)
        plan.out_counts.copy_(plan.counts_by_tree)
