"""AE: a deterministic autoencoder, the paper's unregularised baseline."""
from __future__ import annotations

import torch

from reference_models.config import ModelConfig
from reference_models.models.base import ReferenceModel
from reference_models.models.registry import register_model


@register_model("ae", paper_position=0)
class AE(ReferenceModel):
    """Deterministic autoencoder: ``z = encoder(x)`` in R^d, ``loss = recon``.

    ``encode`` returns ``z``; ``decode`` takes ``z``. See :class:`ReferenceModel` for the
    interface.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config, encoder_features=config.latent_dim,
                         decoder_features=config.latent_dim)

    def _sample(self, x: torch.Tensor, tau: float) -> torch.Tensor:
        return self.encoder(x)

    def _loss_from_sample(self, x, z):
        recon = self.reconstruction_loss(self.decoder(z), x)
        return recon, {"recon": recon}

    def encode(self, x: torch.Tensor, *, sample: bool = False) -> torch.Tensor:
        """Latents ``z`` (B, d); ``sample`` has no effect (the encoder is deterministic)."""
        return self.encoder(self._check_images(x))

    def decode(self, representation: torch.Tensor) -> torch.Tensor:
        return self.decoder(self._check_latents(representation))
