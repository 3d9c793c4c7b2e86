"""QVAE: the paper's scalar quantisation with one global codebook and a stochastic posterior."""
from __future__ import annotations

import torch

from reference_models.config import ModelConfig
from reference_models.models.base import CategoricalModel
from reference_models.models.quantizers import DistanceQuantizer
from reference_models.models.registry import register_model


@register_model("qvae", paper_position=6)
class QVAE(CategoricalModel):
    """Each latent of ``z_e`` (B, d) picks a scalar of the global codebook M (K, 1).

    Logits are ``-distance(z_e_j, M)`` (paper Eq. 3-4; ``config.distance``: "squared" as
    the authors' code, "absolute" as Eq. 3), relaxed one-hot at temperature tau in
    training, nearest codeword in evaluation; the decoder reads ``weights @ M``.
    ``loss = recon + beta * KL(softmax(logits) || Uniform(K))``, the KL averaged over the
    batch and the latents. M starts from N(0, 1) and is trained. ``encode`` returns the
    nearest-codeword indices (B, d).
    """

    def __init__(self, config: ModelConfig) -> None:
        self._check_codebook_dim(config)
        dim = config.latent_dim * config.codebook_dim
        super().__init__(config, encoder_features=dim, decoder_features=dim)
        self.quantizer = DistanceQuantizer(config.codebook_size, config.codebook_dim,
                                           config.distance)

    def _check_codebook_dim(self, config: ModelConfig) -> None:
        if config.codebook_dim != 1:
            raise ValueError(f"{self.name} quantises scalars and needs codebook_dim=1: got "
                             f"{config.codebook_dim} (vqvae quantises vectors)")

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantizer.logits(self.encoder(x))
