"""BioAE: an autoencoder with biologically inspired activity penalties (Whittington et al. 2023)."""
from __future__ import annotations

import torch

from reference_models.models.ae import AE
from reference_models.models.registry import register_model


@register_model("bioae", paper_position=3)
class BioAE(AE):
    """AE whose latents are pushed to be non-negative and sparse.

    ``loss = recon + beta_nonneg * nonneg + beta_activity * activity`` with
    ``nonneg = mean(relu(-z))`` and ``activity = mean(z**2)`` (the paper's Table 3 weights
    are 1 and 1e-2 or 0.1). ``encode`` returns ``z``.
    """

    def _loss_from_sample(self, x, z):
        recon = self.reconstruction_loss(self.decoder(z), x)
        nonneg = torch.relu(-z).mean()
        activity = z.square().mean()
        config = self.config
        loss = recon + config.beta_nonneg * nonneg + config.beta_activity * activity
        return loss, {"recon": recon, "nonneg": nonneg, "activity": activity}
