"""beta-VAE (Higgins et al. 2017): a Gaussian VAE with a weighted KL term."""
from __future__ import annotations

from typing import NamedTuple

import torch

from reference_models.config import ModelConfig
from reference_models.models.base import ReferenceModel
from reference_models.models.registry import register_model


class GaussianSample(NamedTuple):
    mean: torch.Tensor
    log_var: torch.Tensor
    z: torch.Tensor


@register_model("betavae", paper_position=1, display_name="beta-VAE")
class BetaVAE(ReferenceModel):
    """Gaussian encoder (o = 2d: mean and log-variance), reparameterised sample.

    ``loss = recon + beta * kl`` with ``kl`` the KL divergence of N(mean, var) to N(0, I),
    summed over latents and averaged over the batch (as the authors compute it). In
    evaluation mode the decoder reads the mean. ``encode`` returns the posterior mean, or
    a reparameterised sample with ``sample=True``; without ``sample``, what
    ``config.evaluate_on`` says ("mean", or "sample" as the authors' evaluation, which
    draws with torch's global generator).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config, encoder_features=2 * config.latent_dim,
                         decoder_features=config.latent_dim)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance (B, d) of q(z | x)."""
        mean, log_var = self.encoder(x).chunk(2, dim=1)
        return mean, log_var

    @staticmethod
    def reparameterize(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        return mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)

    def _sample(self, x: torch.Tensor, tau: float) -> GaussianSample:
        mean, log_var = self.posterior(x)
        z = self.reparameterize(mean, log_var) if self.training else mean
        return GaussianSample(mean, log_var, z)

    def _discriminator_codes(self, sample: GaussianSample) -> torch.Tensor:
        return sample.z

    def _loss_from_sample(self, x, sample: GaussianSample):
        recon = self.reconstruction_loss(self.decoder(sample.z), x)
        kl = (-0.5 * (1 + sample.log_var - sample.mean.square() - sample.log_var.exp())
              ).sum(dim=1).mean()
        return recon + self.config.beta * kl, {"recon": recon, "kl": kl}

    def encode(self, x: torch.Tensor, *, sample: bool | None = None) -> torch.Tensor:
        """Posterior mean (B, d), or a reparameterised sample if ``sample``.

        ``sample=None`` follows ``config.evaluate_on``.
        """
        if sample is None:
            sample = self.config.evaluate_on == "sample"
        mean, log_var = self.posterior(self._check_images(x))
        return self.reparameterize(mean, log_var) if sample else mean

    def decode(self, representation: torch.Tensor) -> torch.Tensor:
        return self.decoder(self._check_latents(representation))
