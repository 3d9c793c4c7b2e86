"""VQVAE ablation of the paper's Table 2: QVAE with codebook vectors instead of scalars."""
from __future__ import annotations

from reference_models.config import ModelConfig
from reference_models.models.qvae import QVAE
from reference_models.models.registry import register_model


@register_model("vqvae", paper_position=9)
class VQVAE(QVAE):
    """QVAE whose encoder output (B, d * D) is cut into d chunks of size D.

    Each chunk picks a vector of the codebook M (K, D) (D = ``codebook_dim``, 8 or 16 in
    the paper's Table 2) through the same stochastic posterior; the decoder reads d * D
    values. ``encode`` returns one index per chunk (B, d).
    """

    def _check_codebook_dim(self, config: ModelConfig) -> None:
        pass  # any D; D = 1 is QVAE itself
