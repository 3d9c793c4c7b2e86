"""How much memory a training run or a trained model needs, known before allocating it.

A width or a batch size typed wrong (``--set width=100000``, ``--batch-size
100000000000``) would otherwise make the process allocate until the machine swaps or
the allocator fails deep inside torch. The model is built on PyTorch's ``meta`` device
(shapes only, no storage) to count its parameters and the activations one image makes
in the encoder, decoder and discriminator. The estimate is a lower bound of what the
run holds at its peak, checked by :func:`disentangle_eval._validation.require_memory`
(the check the metrics use): a run is refused only when even the lower bound exceeds
the memory available, so no run that could fit is refused.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from disentangle_eval._validation import DataError, display_text, require_memory
from reference_models.config import ModelConfig
from reference_models.models import build_model
from reference_models.models.layers import Decoder, Encoder, TCDiscriminator

__all__ = ["InsufficientMemoryError", "MemoryEstimate", "estimate_model",
           "check_training_fits", "check_inference_fits"]

_FLOAT_BYTES = 4
# Parameters, gradients and Adam's two moments, float32 each.
_TRAINING_BYTES_PER_PARAMETER = 4 * _FLOAT_BYTES


class InsufficientMemoryError(DataError):
    """A model too large to be even described (sizes past what torch can index)."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Sizes of a model, from a build on the ``meta`` device.

    Attributes
    ----------
    parameters : int
        Number of parameters.
    activations_per_image : int
        Elements of the outputs of every layer of the encoder, decoder and discriminator
        for one image (what a training step keeps for the backward pass, per image).
    image_elements : int
        Elements of one input image.
    """

    parameters: int
    activations_per_image: int
    image_elements: int


def estimate_model(model: str, config: ModelConfig) -> MemoryEstimate:
    """Parameters and per-image activations of ``model`` built from ``config``.

    Raises
    ------
    InsufficientMemoryError
        The configuration is too large to be even described (sizes torch cannot index).
    """
    image_shape = (config.channels, config.image_size, config.image_size)
    outputs = 0

    def count(_module, _inputs, output) -> None:
        nonlocal outputs
        if isinstance(output, torch.Tensor):
            outputs += output.numel()

    try:
        with torch.device("meta"):
            network = build_model(model, config)
            parameters = sum(p.numel() for p in network.parameters())
            for part in network.modules():
                if isinstance(part, Encoder):
                    x = torch.empty(1, *image_shape)
                elif isinstance(part, (Decoder, TCDiscriminator)):
                    first = next(m for m in part.modules() if isinstance(m, nn.Linear))
                    x = torch.empty(1, first.in_features)
                else:
                    continue
                hooks = [m.register_forward_hook(count) for m in part.modules()
                         if not any(True for _ in m.children())]
                try:
                    part(x)
                finally:
                    for hook in hooks:
                        hook.remove()
    except (RuntimeError, OverflowError) as exc:  # sizes past what torch can index
        raise InsufficientMemoryError(
            f"model {model!r} with {_settings(config)} is too large to build "
            f"({display_text(' '.join(str(exc).split()), 120)})") from None
    return MemoryEstimate(parameters=int(parameters), activations_per_image=int(outputs),
                          image_elements=int(torch.Size(image_shape).numel()))


def check_training_fits(model: str, config: ModelConfig, *, batch_size: int,
                        evaluation_rows: int, n_factors: int,
                        device: torch.device) -> MemoryEstimate:
    """Refuse a training run whose lower-bound memory exceeds what ``device`` has.

    The bound: parameters with gradients and Adam moments, one batch of float32 images
    with every layer's output for it, and the evaluation's latents and factors
    (``evaluation_rows`` rows, int64).

    Raises
    ------
    disentangle_eval.DataError
        One line naming the need, the memory available and what to lower
        (:class:`InsufficientMemoryError` for sizes torch cannot even index).
    """
    estimate = estimate_model(model, config)
    need = (estimate.parameters * _TRAINING_BYTES_PER_PARAMETER
            + batch_size * (estimate.image_elements + estimate.activations_per_image)
            * _FLOAT_BYTES
            + evaluation_rows * (config.latent_dim + n_factors) * 8)
    require_memory(need, f"training {model!r} ({_count(estimate.parameters)} parameters, "
                         f"batch {batch_size}, {_settings(config)})", device=device,
                   hint="lower --batch-size, or the network widths with --set")
    return estimate


def check_inference_fits(model: str, config: ModelConfig,
                         device: torch.device) -> MemoryEstimate:
    """Refuse to build a trained model (for figures) whose parameters cannot fit.

    Raises
    ------
    disentangle_eval.DataError
    """
    estimate = estimate_model(model, config)
    require_memory(estimate.parameters * _FLOAT_BYTES,
                   f"model {model!r} ({_count(estimate.parameters)} parameters, "
                   f"{_settings(config)})", device=device,
                   hint="check the widths in its config.json")
    return estimate


def _settings(config: ModelConfig) -> str:
    return (f"width {config.width}, dense_width {config.dense_width}, "
            f"discriminator_width {config.discriminator_width}, "
            f"image_size {config.image_size}")


def _count(count: int) -> str:
    return f"{count:,}" if count < 10**9 else f"{count:.3g}"
