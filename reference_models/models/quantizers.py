"""Quantisers of the discrete reference models.

- :class:`ScalarLatentQuantizer` (QLAE): each latent has its own K scalar values; nearest
  value, straight-through gradient, codebook and commitment losses.
- :class:`CategoricalCodebook` (dVAE): a global codebook M of shape (K, D) read through
  a categorical posterior given by logits; relaxed one-hot (Gumbel-softmax) samples in
  training, the most likely entry in evaluation.
- :class:`DistanceQuantizer` (QVAE, VQVAE and their Factor versions, the paper's Eq. 3-4):
  the same, with logits ``-distance(z_e chunk, M)``; D = 1 is the paper's scalar
  quantisation, D > 1 the vector ablation of its Table 2.

Codes are int64 indices of shape (B, d) everywhere; ``code_values(indices)`` gives the
values the decoder reads and ``codes -> values -> codes`` round-trips.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ScalarLatentQuantizer", "CategoricalCodebook", "DistanceQuantizer", "QuantizerOutput",
    "relaxed_one_hot", "kl_to_uniform", "perplexity",
]


def relaxed_one_hot(logits: torch.Tensor, tau: float,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample of the relaxed one-hot categorical (Gumbel-softmax) over the last axis.

    ``softmax((logits + g) / tau)`` with ``g`` standard Gumbel noise (Jang et al. 2017;
    Maddison et al. 2017). As ``tau -> 0`` the sample tends to the one-hot of a draw from
    ``Categorical(logits)``.

    Parameters
    ----------
    logits : Tensor of shape (..., K)
    tau : float
        Temperature, positive.
    generator : torch.Generator, optional
        Source of the noise.

    Returns
    -------
    Tensor of the shape of ``logits``, rows on the simplex.
    """
    if not tau > 0:
        raise ValueError(f"tau must be positive: got {tau!r}")
    uniform = torch.rand(logits.shape, generator=generator, device=logits.device,
                         dtype=logits.dtype)
    # Clamp away from 0 and 1 so that -log(-log(u)) stays finite.
    tiny = torch.finfo(logits.dtype).tiny
    uniform = uniform.clamp(min=tiny, max=1.0 - torch.finfo(logits.dtype).eps)
    gumbel = -torch.log(-torch.log(uniform))
    return torch.softmax((logits + gumbel) / tau, dim=-1)


def kl_to_uniform(logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(logits) || Uniform(K)), averaged over every leading axis.

    Equals ``sum_k p_k log(K p_k)``: 0 for a uniform posterior, ``ln K`` for a one-hot one.

    Parameters
    ----------
    logits : Tensor of shape (B, d, K)

    Returns
    -------
    Tensor, scalar.
    """
    log_p = torch.log_softmax(logits, dim=-1)
    per_latent = (log_p.exp() * (log_p + math.log(logits.shape[-1]))).sum(dim=-1)
    return per_latent.mean()


@torch.no_grad()
def perplexity(indices: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """Perplexity ``exp(H)`` of codebook usage pooled over the batch and all latents.

    1 when one entry is used, ``codebook_size`` when all are used equally.

    Parameters
    ----------
    indices : int64 Tensor of any shape
    codebook_size : int

    Returns
    -------
    Tensor, scalar float, detached.
    """
    counts = torch.bincount(indices.flatten(), minlength=codebook_size).to(torch.float64)
    probs = counts / counts.sum()
    entropy = -(probs * torch.log(probs.clamp_min(1e-300))).sum()
    return entropy.exp().to(torch.float32)


class QuantizerOutput(NamedTuple):
    """What a categorical quantiser returns for a batch of B samples, d latents, K entries.

    Attributes
    ----------
    quantized : Tensor of shape (B, d * D)
        ``weights @ M`` flattened: the decoder input.
    weights : Tensor of shape (B, d, K)
        Relaxed one-hot sample (training) or exact one-hot (evaluation).
    indices : int64 Tensor of shape (B, d)
        Argmax of ``weights``.
    logits : Tensor of shape (B, d, K)
        Logits of the categorical posterior q(z | x).
    """

    quantized: torch.Tensor
    weights: torch.Tensor
    indices: torch.Tensor
    logits: torch.Tensor


class ScalarLatentQuantizer(nn.Module):
    """Per-latent scalar codebooks of QLAE (Hsu et al. 2023).

    Latent ``j`` is replaced by the nearest of its ``K`` values ``codebook[j]``; gradients
    pass straight through to the encoder.

    Parameters
    ----------
    latent_dim : int
        Number of latents d.
    values_per_latent : int
        K, values per latent (16 in the paper's Table 3).

    Notes
    -----
    The values start evenly spaced in [-1, 1] as in the QLAE paper (the FactorQVAE code
    draws them from N(0, 1)); an ordered start keeps index order meaningful.
    """

    def __init__(self, latent_dim: int, values_per_latent: int) -> None:
        super().__init__()
        start = torch.linspace(-1.0, 1.0, values_per_latent)
        self.codebook = nn.Parameter(start.repeat(latent_dim, 1))  # (d, K)

    @property
    def codebook_size(self) -> int:
        return self.codebook.shape[1]

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Indices (B, d) of the value nearest to each latent of ``z`` (B, d)."""
        return (z.unsqueeze(-1) - self.codebook).abs().argmin(dim=-1)

    def code_values(self, indices: torch.Tensor) -> torch.Tensor:
        """Values (B, d) of the codes ``indices`` (B, d)."""
        _check_indices(indices, self.codebook.shape[0], self.codebook_size)
        expanded = self.codebook.unsqueeze(0).expand(indices.shape[0], -1, -1)
        return expanded.gather(2, indices.unsqueeze(-1)).squeeze(-1)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                 torch.Tensor, torch.Tensor]:
        """Quantise ``z`` (B, d).

        Returns
        -------
        z_st : Tensor (B, d)
            Quantised values with the straight-through gradient ``z + sg(z_q - z)``.
        indices : int64 Tensor (B, d)
        quantize_loss : Tensor
            ``mean((z_q - sg(z))**2)``, moves the values.
        commit_loss : Tensor
            ``mean((sg(z_q) - z)**2)``, moves the encoder.
        """
        indices = self.nearest(z.detach())
        z_q = self.code_values(indices)
        quantize_loss = F.mse_loss(z_q, z.detach())
        commit_loss = F.mse_loss(z, z_q.detach())
        z_st = z + (z_q - z).detach()
        return z_st, indices, quantize_loss, commit_loss


class CategoricalCodebook(nn.Module):
    """Global codebook M (K, D) read through a categorical posterior over its entries.

    In training the entry weights are a relaxed one-hot sample at temperature ``tau``;
    in evaluation (``module.eval()``) they are the exact one-hot of the most likely
    entry, so evaluation is deterministic.

    Parameters
    ----------
    codebook_size : int
        K.
    codebook_dim : int, default 1
        D.

    Notes
    -----
    M starts from N(0, 1) and is trained by the VAE optimiser.
    """

    def __init__(self, codebook_size: int, codebook_dim: int = 1) -> None:
        super().__init__()
        self.codebook = nn.Parameter(torch.randn(codebook_size, codebook_dim))

    @property
    def codebook_size(self) -> int:
        return self.codebook.shape[0]

    @property
    def codebook_dim(self) -> int:
        return self.codebook.shape[1]

    def code_values(self, indices: torch.Tensor) -> torch.Tensor:
        """Decoder input (B, d * D) of the codes ``indices`` (B, d)."""
        _check_indices(indices, None, self.codebook_size)
        return self.codebook[indices].flatten(1)

    def quantize_logits(self, logits: torch.Tensor, tau: float,
                        generator: torch.Generator | None = None) -> QuantizerOutput:
        """Quantise from logits (B, d, K); see :class:`QuantizerOutput`."""
        if self.training:
            weights = relaxed_one_hot(logits, tau, generator)
            indices = weights.argmax(dim=-1)
        else:
            indices = logits.argmax(dim=-1)
            weights = F.one_hot(indices, self.codebook_size).to(logits.dtype)
        quantized = (weights @ self.codebook).flatten(1)
        return QuantizerOutput(quantized, weights, indices, logits)

    def forward(self, logits: torch.Tensor, tau: float,
                generator: torch.Generator | None = None) -> QuantizerOutput:
        return self.quantize_logits(logits, tau, generator)


class DistanceQuantizer(CategoricalCodebook):
    """FactorQVAE's stochastic quantiser: logits ``-distance(z_e, M)`` (paper Eq. 3-4).

    The encoder output (B, d * D) is cut into d chunks of size D; chunk ``j`` gets the
    categorical posterior ``softmax(-R_j)`` over the K codewords, ``R_j[k]`` its distance
    to ``M[k]``.

    Parameters
    ----------
    codebook_size : int
        K (64 in the paper).
    codebook_dim : int, default 1
        D; 1 for QVAE/FactorQVAE.
    distance : {"squared", "absolute"}, default "squared"
        ``sum (z - m)**2`` as the authors' code computes it, or ``sum |z - m|`` as the
        paper's Eq. 3 writes it (for D = 1, ``|z - m|``).
    """

    def __init__(self, codebook_size: int, codebook_dim: int = 1,
                 distance: str = "squared") -> None:
        super().__init__(codebook_size, codebook_dim)
        if distance not in ("squared", "absolute"):
            raise ValueError(f"distance must be 'squared' or 'absolute': got {distance!r}")
        self.distance = distance

    def logits(self, z_e: torch.Tensor) -> torch.Tensor:
        """Logits (B, d, K) of the encoder output ``z_e`` (B, d * D)."""
        if z_e.dim() != 2 or z_e.shape[1] % self.codebook_dim:
            raise ValueError(f"z_e must have shape (B, d * {self.codebook_dim}): "
                             f"got {tuple(z_e.shape)}")
        chunks = z_e.view(z_e.shape[0], -1, 1, self.codebook_dim)  # (B, d, 1, D)
        difference = chunks - self.codebook  # (B, d, K, D)
        if self.distance == "squared":
            return -difference.square().sum(dim=-1)
        return -difference.abs().sum(dim=-1)

    def forward(self, z_e: torch.Tensor, tau: float,
                generator: torch.Generator | None = None) -> QuantizerOutput:
        return self.quantize_logits(self.logits(z_e), tau, generator)


def _check_indices(indices: torch.Tensor, latent_dim: int | None, codebook_size: int) -> None:
    if indices.dtype not in (torch.int64, torch.int32) or indices.dim() != 2:
        raise TypeError(f"codes must be an int64 tensor of shape (B, d): got dtype "
                        f"{indices.dtype}, shape {tuple(indices.shape)}")
    if latent_dim is not None and indices.shape[1] != latent_dim:
        raise ValueError(f"codes must have {latent_dim} latents: got {indices.shape[1]}")
    if indices.numel() and (indices.min() < 0 or indices.max() >= codebook_size):
        raise ValueError(f"codes must lie in [0, {codebook_size}): got values in "
                         f"[{int(indices.min())}, {int(indices.max())}]")
