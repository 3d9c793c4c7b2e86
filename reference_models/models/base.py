"""The base class every reference model derives from, and the total-correlation mixin."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reference_models.config import ModelConfig
from reference_models.models.layers import (
    Decoder, Encoder, TCDiscriminator, init_weights, permute_dims,
)
from reference_models.models.quantizers import (
    CategoricalCodebook, QuantizerOutput, kl_to_uniform, perplexity,
)

__all__ = ["ReferenceModel", "CategoricalModel", "FactorModelMixin"]


class ReferenceModel(nn.Module):
    """Encoder, decoder and loss of one reference model; subclasses register by name.

    The training loop and the latent dump rely on this interface only.

    Training
    --------
    ``loss_terms(x, tau) -> dict[str, Tensor]``
        The VAE step on a batch ``x`` of images (B, C, S, S) scaled to [-0.5, 0.5] at
        Gumbel-softmax temperature ``tau`` (ignored by continuous models). ``"loss"`` is the
        total to backpropagate; every other entry is a detached scalar: the unweighted terms
        (``"recon"``: per-pixel mean squared error, ``"kl"``, ``"tc"``, ``"quantize"``,
        ``"commit"``, ``"nonneg"``, ``"activity"`` as the model has them; the model's
        docstring gives the weighted sum) and diagnostics such as ``"perplexity"``
        (codebook usage).
    ``has_discriminator``
        True for the Factor models, which also have
        ``discriminator_loss(x_prime, tau) -> dict`` (with ``"loss"``), the step that trains
        the total-correlation discriminator on a second batch ``x'`` (Algorithm 1 of the
        paper), and two parameter groups, ``vae_parameters()`` and
        ``discriminator_parameters()``, for two optimisers. ``loss_terms`` leaves no gradient
        on the discriminator and ``discriminator_loss`` none on the rest.
        One iteration of Algorithm 1::

            terms = model.loss_terms(x, tau)
            vae_opt.zero_grad(); terms["loss"].backward(); vae_opt.step()
            if model.has_discriminator:
                d_terms = model.discriminator_loss(x_prime, tau)
                disc_opt.zero_grad(); d_terms["loss"].backward(); disc_opt.step()

    Representation
    --------------
    ``encode(x, sample=False) -> Tensor (B, d)``
        What the metrics score: int64 code indices for the quantised models, ``z`` for
        ae/bioae, the posterior mean for betavae/factorvae. Deterministic unless
        ``sample=True`` (a reparameterised sample, or a categorical draw of the codes).
    ``decode(representation) -> Tensor (B, C, S, S)``
        Images from what ``encode`` returns.
    ``codebook``, ``code_values(indices)``
        Quantised models only: the codebook values and the decoder input of given codes.

    ``model.eval()`` makes ``loss_terms`` and ``forward`` deterministic (posterior mean,
    nearest codeword, no Gumbel noise).

    Parameters
    ----------
    config : ModelConfig
    encoder_features : int
        Size ``o`` of the encoder output.
    decoder_features : int
        Size ``p`` of the decoder input.
    """

    name: str = ""  # set by @register_model
    has_discriminator: bool = False
    is_quantized: bool = False

    def __init__(self, config: ModelConfig, encoder_features: int, decoder_features: int) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig: got {type(config).__name__}")
        self.config = config
        self.latent_dim = config.latent_dim
        self.encoder = Encoder(config.image_size, config.channels, config.width,
                               config.dense_width, encoder_features, config.blocks_per_group)
        self.decoder = Decoder(config.image_size, config.channels, config.width,
                               decoder_features, config.decoder_channels,
                               config.blocks_per_group)
        if config.weight_init == "paper":
            self.encoder.apply(init_weights)
            self.decoder.apply(init_weights)

    # -- interface, implemented by subclasses ------------------------------------------

    def _sample(self, x: torch.Tensor, tau: float) -> Any:
        """Latent sample of the training step (model-specific structure)."""
        raise NotImplementedError

    def _loss_from_sample(self, x: torch.Tensor, sample: Any
                          ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and its named (unweighted) terms."""
        raise NotImplementedError

    def encode(self, x: torch.Tensor, *, sample: bool = False) -> torch.Tensor:
        """Representation (B, d) of images ``x`` (B, C, S, S); see the class docstring."""
        raise NotImplementedError

    def decode(self, representation: torch.Tensor) -> torch.Tensor:
        """Images (B, C, S, S) of a representation as :meth:`encode` returns it."""
        raise NotImplementedError

    # -- shared behaviour ---------------------------------------------------------------

    def loss_terms(self, x: torch.Tensor, tau: float = 1.0) -> dict[str, torch.Tensor]:
        """Loss of the VAE step on ``x``; see the class docstring.

        Parameters
        ----------
        x : Tensor of shape (B, C, S, S)
            Images scaled to [-0.5, 0.5].
        tau : float, default 1.0
            Gumbel-softmax temperature (positive); ignored by continuous models.

        Returns
        -------
        dict of str to Tensor
            ``"loss"`` with its graph, the other entries detached scalars.
        """
        x = self._check_images(x)
        if not (isinstance(tau, (int, float)) and tau > 0):
            raise ValueError(f"tau must be a positive number: got {tau!r}")
        sample = self._sample(x, float(tau))
        loss, terms = self._loss_from_sample(x, sample)
        loss, terms = self._add_regularisers(sample, loss, terms)
        return {"loss": loss, **{key: value.detach() for key, value in terms.items()}}

    def _add_regularisers(self, sample: Any, loss: torch.Tensor,
                          terms: dict[str, torch.Tensor]
                          ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Hook for terms added by mixins (the total correlation); identity here."""
        return loss, terms

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``decode(encode(x))``, deterministic."""
        return self.decode(self.encode(x))

    def vae_parameters(self) -> list[nn.Parameter]:
        """Parameters trained by the VAE loss: all but the discriminator's."""
        return [p for name, p in self.named_parameters() if not name.startswith("discriminator.")]

    def discriminator_parameters(self) -> list[nn.Parameter]:
        """Parameters of the total-correlation discriminator (empty without one)."""
        return []

    def discriminator_loss(self, x_prime: torch.Tensor, tau: float = 1.0, *,
                           joint_codes: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Loss of the discriminator step; only Factor models have one."""
        raise TypeError(f"model {self.name!r} has no discriminator "
                        "(check model.has_discriminator)")

    def reconstruction_loss(self, reconstruction: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel mean squared error, as in the authors' code."""
        return F.mse_loss(reconstruction, x)

    def _check_images(self, x: torch.Tensor) -> torch.Tensor:
        config = self.config
        expected = (config.channels, config.image_size, config.image_size)
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor: got {type(x).__name__}")
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"x must have shape (B, {expected[0]}, {expected[1]}, {expected[2]}): "
                             f"got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"x must be a float tensor scaled to [-0.5, 0.5]: got {x.dtype}")
        return x

    def _check_latents(self, z: torch.Tensor) -> torch.Tensor:
        if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != self.latent_dim:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"representation must have shape (B, {self.latent_dim}): got {shape}")
        if not z.is_floating_point():
            raise TypeError(f"model {self.name!r} decodes float latents: got {z.dtype}")
        return z


class CategoricalModel(ReferenceModel):
    """Base of the models with a categorical posterior over a global codebook.

    Subclasses set ``self.quantizer`` (a :class:`CategoricalCodebook`) and implement
    ``_logits(x)`` (B, d, K). In training the decoder reads ``weights @ M`` with relaxed
    one-hot weights at temperature ``tau``; in evaluation the nearest / most likely entry.
    ``loss = recon + beta * kl`` with ``kl = KL(q(z | x) || Uniform(K))`` averaged over
    the batch and the latents; ``"perplexity"`` reports codebook usage.
    """

    is_quantized = True
    quantizer: CategoricalCodebook

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _sample(self, x: torch.Tensor, tau: float) -> QuantizerOutput:
        return self.quantizer.quantize_logits(self._logits(x), tau)

    def _discriminator_codes(self, sample: QuantizerOutput) -> torch.Tensor:
        return sample.weights

    def _loss_from_sample(self, x, sample: QuantizerOutput):
        recon = self.reconstruction_loss(self.decoder(sample.quantized), x)
        kl = kl_to_uniform(sample.logits)
        usage = perplexity(sample.indices, self.quantizer.codebook_size)
        return recon + self.config.beta * kl, {"recon": recon, "kl": kl, "perplexity": usage}

    @property
    def codebook(self) -> torch.Tensor:
        """The codebook M, shape (K, D)."""
        return self.quantizer.codebook

    def code_values(self, indices: torch.Tensor) -> torch.Tensor:
        """Decoder input (B, d * D) of the codes ``indices`` (B, d)."""
        return self.quantizer.code_values(self._check_codes(indices))

    def encode(self, x: torch.Tensor, *, sample: bool = False) -> torch.Tensor:
        """Codes (B, d), int64: the most likely entry, or a categorical draw if ``sample``."""
        logits = self._logits(self._check_images(x))
        if sample:
            return torch.distributions.Categorical(logits=logits).sample()
        return logits.argmax(dim=-1)

    def decode(self, representation: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.code_values(representation))

    def _check_codes(self, indices: torch.Tensor) -> torch.Tensor:
        if not isinstance(indices, torch.Tensor) or indices.dim() != 2 \
                or indices.shape[1] != self.latent_dim:
            shape = tuple(indices.shape) if isinstance(indices, torch.Tensor) else type(indices)
            raise ValueError(f"codes must have shape (B, {self.latent_dim}): got {shape}")
        return indices


class FactorModelMixin:
    """Adds the total-correlation term of FactorVAE / FactorQVAE (paper Eq. 5-8, Alg. 1).

    Put it first among the bases (``class FactorQVAE(FactorModelMixin, QVAE)``); the other
    base provides ``_discriminator_codes(sample)``: the codes (B, d, ...) the discriminator
    sees (the reparameterised ``z``, or the relaxed one-hot weights of each latent).

    The VAE loss adds ``gamma * mean(logit_joint - logit_permuted)`` on the batch ``x``,
    the discriminator scoring with detached copies of its parameters so that the VAE step
    moves the encoder, never the discriminator. The joint codes of that batch are kept,
    detached, for the discriminator step, which classifies them (label 0, "joint")
    against the codes of a second batch ``x'`` permuted latent by latent across the batch
    (label 1). The published code reused the discriminator output of the VAE step after
    the VAE optimiser had changed the encoder in place, which current PyTorch rejects;
    here the discriminator scores the stored codes afresh.
    """

    has_discriminator = True
    discriminator: TCDiscriminator

    def _build_discriminator(self, in_features: int) -> None:
        config: ModelConfig = self.config  # type: ignore[attr-defined]
        self.discriminator = TCDiscriminator(in_features, config.discriminator_width,
                                             config.discriminator_depth)
        if config.weight_init == "paper":
            self.discriminator.apply(init_weights)
        self._joint_codes: torch.Tensor | None = None

    def discriminator_parameters(self) -> list[nn.Parameter]:
        return list(self.discriminator.parameters())

    def _add_regularisers(self, sample: Any, loss: torch.Tensor,
                          terms: dict[str, torch.Tensor]
                          ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, terms = super()._add_regularisers(sample, loss, terms)  # type: ignore[misc]
        codes = self._discriminator_codes(sample)  # type: ignore[attr-defined]
        # Detached parameters: gradient flows into the codes but never into the
        # discriminator, which only its own loss trains (Algorithm 1).
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        logits = torch.func.functional_call(self.discriminator, frozen, (codes,))
        total_correlation = (logits[:, TCDiscriminator.JOINT]
                             - logits[:, TCDiscriminator.PERMUTED]).mean()
        self._joint_codes = codes.detach()
        terms = {**terms, "tc": total_correlation}
        return loss + self.config.gamma * total_correlation, terms  # type: ignore[attr-defined]

    def discriminator_loss(self, x_prime: torch.Tensor, tau: float = 1.0, *,
                           joint_codes: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Loss of the discriminator step on the second batch ``x_prime``.

        Cross-entropy, averaged over the two halves, of telling the joint codes of the last
        VAE step (or ``joint_codes``) from the codes of ``x_prime`` each latent of which
        is permuted independently across the batch (the paper's Eq. 8 as a loss to
        minimise). The encoder runs without gradient here.

        Parameters
        ----------
        x_prime : Tensor of shape (B', C, S, S)
            Second batch of images.
        tau : float, default 1.0
            Temperature of the relaxed codes of ``x_prime`` (the same as the VAE step).
        joint_codes : Tensor, optional
            Codes (B, d, ...) from q(z); by default those of the last :meth:`loss_terms`.

        Returns
        -------
        dict of str to Tensor
            ``"loss"`` (gradient on the discriminator only), and detached ``"accuracy"``
            (fraction of the 2 B codes classified right) and ``"tc_estimate"`` (mean
            joint-minus-permuted logit on the joint codes).
        """
        x_prime = self._check_images(x_prime)  # type: ignore[attr-defined]
        if joint_codes is None:
            joint_codes = self._joint_codes
        if joint_codes is None:
            raise ValueError("no joint codes: call loss_terms(x, tau) first (Algorithm 1 "
                             "scores the VAE batch's codes) or pass joint_codes=")
        with torch.no_grad():
            sample = self._sample(x_prime, float(tau))  # type: ignore[attr-defined]
            permuted = permute_dims(self._discriminator_codes(sample))  # type: ignore[attr-defined]
        joint_logits = self.discriminator(joint_codes.detach())
        permuted_logits = self.discriminator(permuted)
        joint_labels = torch.full((joint_logits.shape[0],), TCDiscriminator.JOINT,
                                  dtype=torch.long, device=joint_logits.device)
        permuted_labels = torch.full((permuted_logits.shape[0],), TCDiscriminator.PERMUTED,
                                     dtype=torch.long, device=permuted_logits.device)
        loss = 0.5 * (F.cross_entropy(joint_logits, joint_labels)
                      + F.cross_entropy(permuted_logits, permuted_labels))
        with torch.no_grad():
            correct = ((joint_logits.argmax(1) == joint_labels).sum()
                       + (permuted_logits.argmax(1) == permuted_labels).sum())
            accuracy = correct.float() / (joint_labels.numel() + permuted_labels.numel())
            tc_estimate = (joint_logits[:, TCDiscriminator.JOINT]
                           - joint_logits[:, TCDiscriminator.PERMUTED]).mean()
        return {"loss": loss, "accuracy": accuracy, "tc_estimate": tc_estimate}
