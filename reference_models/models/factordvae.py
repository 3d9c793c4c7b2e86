"""FactordVAE: dVAE plus the total-correlation term (the paper's ablation)."""
from __future__ import annotations

from reference_models.config import ModelConfig
from reference_models.models.base import FactorModelMixin
from reference_models.models.dvae import DVAE
from reference_models.models.registry import register_model


@register_model("factordvae", paper_position=7)
class FactordVAE(FactorModelMixin, DVAE):
    """DVAE with ``loss = recon + beta * kl + gamma * tc``.

    The discriminator sees the flattened relaxed one-hot weights (d * K inputs) in
    training, exact one-hots in evaluation; see :class:`FactorModelMixin` for the two-step
    training.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self._build_discriminator(config.latent_dim * config.codebook_size)
