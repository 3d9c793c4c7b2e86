"""dVAE (Ramesh et al. 2021): the encoder gives categorical logits over a global codebook."""
from __future__ import annotations

import torch

from reference_models.config import ModelConfig
from reference_models.models.base import CategoricalModel
from reference_models.models.quantizers import CategoricalCodebook
from reference_models.models.registry import register_model


@register_model("dvae", paper_position=5, display_name="dVAE")
class DVAE(CategoricalModel):
    """Encoder output (o = d * K) read as logits of d categoricals over K scalar codewords.

    Relaxed one-hot (Gumbel-softmax) weights in training, argmax in evaluation; the
    decoder reads ``weights @ M`` with M (K, 1) a global trainable codebook.
    ``loss = recon + beta * KL(softmax(logits) || Uniform(K))``. ``encode`` returns the
    argmax codes (B, d).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config, encoder_features=config.latent_dim * config.codebook_size,
                         decoder_features=config.latent_dim)
        self.quantizer = CategoricalCodebook(config.codebook_size, 1)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).view(x.shape[0], self.latent_dim, self.config.codebook_size)
