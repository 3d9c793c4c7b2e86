"""How much memory a training run or a trained model needs, known before allocating it.

A width or a batch size typed wrong (``--set width=100000``, ``--batch-size
100000000000``) would otherwise make the process allocate until the machine swaps or
the allocator fails deep inside torch. The model is built on PyTorch's ``meta`` device
(shapes only, no storage) to count its parameters and the activations one image makes
in the encoder, decoder and discriminator; the estimate is a lower bound of what the
run holds at its peak, and a run is refused only when even that exceeds the memory
available, so no run that could fit is refused.
"""
from __future__ import annotations

import os
import resource
from dataclasses import dataclass

import torch
from torch import nn

from reference_models.config import ModelConfig
from reference_models.models import build_model
from reference_models.models.layers import Decoder, Encoder, TCDiscriminator

__all__ = ["InsufficientMemoryError", "MemoryEstimate", "estimate_model", "available_bytes",
           "check_training_fits", "check_inference_fits"]

_FLOAT_BYTES = 4
# Parameters, gradients and Adam's two moments, float32 each.
_TRAINING_BYTES_PER_PARAMETER = 4 * _FLOAT_BYTES


class InsufficientMemoryError(ValueError):
    """A run or a model needs more memory than the device has available."""


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
        The configuration is too large to be even described (sizes past int64).
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
            f"({' '.join(str(exc).split())[:120]})") from None
    return MemoryEstimate(parameters=int(parameters), activations_per_image=int(outputs),
                          image_elements=int(torch.Size(image_shape).numel()))


def available_bytes(device: torch.device) -> int | None:
    """Memory a new allocation can use on ``device``; None when it cannot be told.

    CUDA: the free device memory. CPU: ``MemAvailable`` of ``/proc/meminfo``, lowered to
    what an address-space limit (``RLIMIT_AS``) leaves.
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    available = None
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    limit, _hard = resource.getrlimit(resource.RLIMIT_AS)
    if limit != resource.RLIM_INFINITY:
        available = min(available, max(0, limit - _address_space_in_use()))
    return int(available)


def _address_space_in_use() -> int:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def check_training_fits(model: str, config: ModelConfig, *, batch_size: int,
                        evaluation_rows: int, n_factors: int,
                        device: torch.device) -> MemoryEstimate:
    """Refuse a training run whose lower-bound memory exceeds what ``device`` has.

    The bound: parameters with gradients and Adam moments, one batch of float32 images
    with every layer's output for it, and the evaluation's latents and factors
    (``evaluation_rows`` rows, int64).

    Raises
    ------
    InsufficientMemoryError
        With one line that names the need, the available memory and what to lower.
    """
    estimate = estimate_model(model, config)
    need = (estimate.parameters * _TRAINING_BYTES_PER_PARAMETER
            + batch_size * (estimate.image_elements + estimate.activations_per_image)
            * _FLOAT_BYTES
            + evaluation_rows * (config.latent_dim + n_factors) * 8)
    _refuse_beyond(need, device, f"training {model!r} ({_count(estimate.parameters)} "
                                 f"parameters, batch {batch_size}, {_settings(config)})",
                   "lower --batch-size, or the network widths with --set")
    return estimate


def check_inference_fits(model: str, config: ModelConfig,
                         device: torch.device) -> MemoryEstimate:
    """Refuse to build a trained model (for figures) that cannot fit on ``device``.

    Raises
    ------
    InsufficientMemoryError
    """
    estimate = estimate_model(model, config)
    need = estimate.parameters * _FLOAT_BYTES
    _refuse_beyond(need, device, f"model {model!r} ({_count(estimate.parameters)} "
                                 f"parameters, {_settings(config)})",
                   "check the widths in its config.json")
    return estimate


def _refuse_beyond(need: int, device: torch.device, what: str, remedy: str) -> None:
    available = available_bytes(device)
    if available is not None and need > available:
        raise InsufficientMemoryError(
            f"{what} needs at least {_gib(need)} of memory but only {_gib(available)} "
            f"is available on {device}; {remedy}")


def _settings(config: ModelConfig) -> str:
    return (f"width {config.width}, dense_width {config.dense_width}, "
            f"discriminator_width {config.discriminator_width}, "
            f"image_size {config.image_size}")


def _count(count: int) -> str:
    return f"{count:,}" if count < 10**9 else f"{count:.3g}"


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.3g} GiB"
