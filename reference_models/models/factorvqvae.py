"""FactorVQVAE: VQVAE plus the total-correlation term (the paper's Table 2 ablation)."""
from __future__ import annotations

from reference_models.config import ModelConfig
from reference_models.models.base import FactorModelMixin
from reference_models.models.vqvae import VQVAE
from reference_models.models.registry import register_model


@register_model("factorvqvae", paper_position=10)
class FactorVQVAE(FactorModelMixin, VQVAE):
    """VQVAE with ``loss = recon + beta * kl + gamma * tc``.

    The discriminator sees the flattened relaxed one-hot weights (d * K inputs) in
    training, exact one-hots in evaluation; see :class:`FactorModelMixin` for the two-step
    training.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self._build_discriminator(config.latent_dim * config.codebook_size)
