"""FactorVAE (Kim & Mnih 2018): beta-VAE plus a discriminator-estimated total correlation."""
from __future__ import annotations

from reference_models.config import ModelConfig
from reference_models.models.base import FactorModelMixin
from reference_models.models.betavae import BetaVAE
from reference_models.models.registry import register_model


@register_model("factorvae", paper_position=2)
class FactorVAE(FactorModelMixin, BetaVAE):
    """beta-VAE with ``loss = recon + beta * kl + gamma * tc``.

    The discriminator sees the reparameterised sample z (d inputs); see
    :class:`FactorModelMixin` for the two-step training.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self._build_discriminator(config.latent_dim)
