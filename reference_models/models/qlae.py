"""QLAE (Hsu et al. 2023): latents quantised to per-latent scalar codebooks."""
from __future__ import annotations

import torch

from reference_models.config import ModelConfig
from reference_models.models.base import ReferenceModel
from reference_models.models.quantizers import ScalarLatentQuantizer, perplexity
from reference_models.models.registry import register_model


@register_model("qlae", paper_position=4)
class QLAE(ReferenceModel):
    """Each latent snaps to the nearest of its own K values (straight-through gradient).

    ``loss = recon + quantize_weight * quantize + commit_weight * commit`` with
    ``quantize = mean((z_q - sg(z))**2)`` and ``commit = mean((sg(z_q) - z)**2)``
    (lambda 1e-2 each in the paper's Table 3, K = ``codebook_size`` = 16). The QLAE
    authors also use AdamW weight decay 0.1, the FactorQVAE code none: that is
    ``TrainConfig.weight_decay``. ``encode`` returns the int64 indices (B, d).

    The values start as ``config.qlae_init`` says: ``"linspace"`` evenly spaced in
    [-1, 1], ``"linspace_half"`` in [-0.5, 0.5], ``"normal"`` N(0, 1) draws in no order.
    The metrics read code indices, and DCI's trees split on index order, so an ordered
    start gives QLAE's codes an order that QVAE's global N(0, 1) codebook does not have.
    """

    is_quantized = True

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config, encoder_features=config.latent_dim,
                         decoder_features=config.latent_dim)
        self.quantizer = ScalarLatentQuantizer(config.latent_dim, config.codebook_size)
        with torch.no_grad():
            self.quantizer.codebook.copy_(_initial_values(config))

    def _sample(self, x: torch.Tensor, tau: float):
        return self.quantizer(self.encoder(x))

    def _loss_from_sample(self, x, sample):
        z_st, indices, quantize, commit = sample
        recon = self.reconstruction_loss(self.decoder(z_st), x)
        config = self.config
        loss = recon + config.quantize_weight * quantize + config.commit_weight * commit
        usage = perplexity(indices, self.quantizer.codebook_size)
        return loss, {"recon": recon, "quantize": quantize, "commit": commit,
                      "perplexity": usage}

    @property
    def codebook(self) -> torch.Tensor:
        """Values of each latent, shape (d, K)."""
        return self.quantizer.codebook

    def code_values(self, indices: torch.Tensor) -> torch.Tensor:
        """Values (B, d) of the codes ``indices`` (B, d)."""
        return self.quantizer.code_values(indices)

    def encode(self, x: torch.Tensor, *, sample: bool = False) -> torch.Tensor:
        """Codes (B, d), int64; ``sample`` has no effect (quantisation is deterministic)."""
        return self.quantizer.nearest(self.encoder(self._check_images(x)))

    def decode(self, representation: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.code_values(representation))


def _initial_values(config: ModelConfig) -> torch.Tensor:
    """QLAE's starting values (d, K) for ``config.qlae_init``."""
    shape = (config.latent_dim, config.codebook_size)
    if config.qlae_init == "normal":
        return torch.randn(shape)
    half_width = 1.0 if config.qlae_init == "linspace" else 0.5
    return torch.linspace(-half_width, half_width, config.codebook_size).expand(shape)
