"""FactorQVAE, the paper's model: QVAE plus the total-correlation term (Eq. 5-8, Algorithm 1)."""
from __future__ import annotations

from reference_models.config import ModelConfig
from reference_models.models.base import FactorModelMixin
from reference_models.models.qvae import QVAE
from reference_models.models.registry import register_model


@register_model("factorqvae", paper_position=8)
class FactorQVAE(FactorModelMixin, QVAE):
    """QVAE with ``loss = recon + beta * kl + gamma * tc``.

    The discriminator sees the flattened relaxed one-hot weights (d * K inputs) in
    training, exact one-hots in evaluation; see :class:`FactorModelMixin` for the two-step
    training.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self._build_discriminator(config.latent_dim * config.codebook_size)
