"""Frozen configurations of the reference models and of their training, with typed overrides.

``ModelConfig`` holds what shapes a network and its loss; ``TrainConfig`` holds what the
training loop needs (optimiser, schedules, batch, logging). Both are frozen dataclasses
that validate themselves on construction, so a config that exists is a usable one.
``with_overrides`` applies ``key=value`` strings (from ``--set key=value``) with the type
each field declares; nothing is ever passed to ``eval``.

The values used by the paper live in :mod:`reference_models.presets`.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, Literal, Mapping, TypeVar

Distance = Literal["squared", "absolute"]
DISTANCES: tuple[str, ...] = typing.get_args(Distance)
WeightInit = Literal["paper", "pytorch"]
QLAEInit = Literal["linspace", "linspace_half", "normal"]
EvaluateOn = Literal["mean", "sample"]
CosineAfter = Literal["hold", "periodic"]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and loss weights of one reference model.

    The layer layout is the one of the paper's Appendix A.3 (Table 4): a convolutional
    encoder of three groups of residual blocks at widths ``n, 2n, 4n`` with two 2x poolings,
    a dense head of width ``m`` and a mirrored decoder.

    Parameters
    ----------
    image_size : int, default 64
        Side ``S`` of the square input images (B, channels, S, S). Must be divisible by 4
        (two poolings).
    channels : int, default 3
        Image channels.
    width : int, default 128
        Base convolution width ``n`` of encoder and decoder (the paper's n = 128).
    dense_width : int, default 128
        Width ``m`` of the encoder's two dense layers (the paper's m = 128).
    decoder_channels : int, default 64
        Channels ``c`` of the decoder's first (S/4, S/4) feature map. The paper writes 16,
        the authors' code uses 64.
    blocks_per_group : int, default 2
        Residual blocks per resolution (2 in the paper).
    latent_dim : int, default 12
        Number of latents ``d`` (the paper uses twice the number of factors).
    codebook_size : int, default 64
        Codebook entries ``K``: global codebook size for qvae/dvae/vqvae and their Factor
        versions, values per latent for qlae.
    codebook_dim : int, default 1
        Dimension ``D`` of each codebook vector; 1 for the scalar quantisers, 8 or 16 for
        vqvae/factorvqvae (the paper's Table 2), which quantise D-dimensional chunks.
    distance : {"squared", "absolute"}, default "squared"
        Distance between encoder output and codewords whose negative gives the
        categorical logits of qvae-type models. "squared" as in the authors' code,
        "absolute" as the paper's Eq. 3 writes it.
    beta : float, default 0.0
        Weight of the KL term (betavae, factorvae, dvae, qvae and their Factor versions).
    gamma : float, default 0.0
        Weight of the total-correlation term (Factor models).
    beta_nonneg : float, default 1.0
        BioAE weight of ``mean(relu(-z))``.
    beta_activity : float, default 0.01
        BioAE weight of ``mean(z**2)``.
    quantize_weight : float, default 0.01
        QLAE weight of the codebook loss ``mean((z_q - sg(z))**2)``.
    commit_weight : float, default 0.01
        QLAE weight of the commitment loss ``mean((sg(z_q) - z)**2)``.
    discriminator_width : int, default 1000
        Hidden width of the total-correlation discriminator.
    discriminator_depth : int, default 6
        Number of linear layers of the discriminator (6 in the authors' code).
    weight_init : {"paper", "pytorch"}, default "paper"
        Initialisation of the conv and linear weights: "paper" draws them from
        N(0, 0.02) with zero biases (the authors' code); "pytorch" keeps PyTorch's layer
        defaults (Kaiming-uniform), which leave the early blurred-colour plateau of a
        short run several times faster.
    qlae_init : {"linspace", "linspace_half", "normal"}, default "linspace"
        Start of QLAE's per-latent values: evenly spaced in [-1, 1] (sorted, so code index
        order follows value order), in [-0.5, 0.5] (the QLAE authors' code), or drawn from
        N(0, 1) unsorted (the FactorQVAE authors' code, which produced the paper's
        Table 1). Other models ignore it.
    evaluate_on : {"mean", "sample"}, default "mean"
        What betavae and factorvae hand to the metrics and the decoder in evaluation: the
        posterior mean (disentanglement_lib's convention) or a reparameterised sample
        (the FactorQVAE authors' evaluation, which produced Table 1). Other models
        ignore it.
    """

    image_size: int = 64
    channels: int = 3
    width: int = 128
    dense_width: int = 128
    decoder_channels: int = 64
    blocks_per_group: int = 2
    latent_dim: int = 12
    codebook_size: int = 64
    codebook_dim: int = 1
    distance: Distance = "squared"
    beta: float = 0.0
    gamma: float = 0.0
    beta_nonneg: float = 1.0
    beta_activity: float = 1e-2
    quantize_weight: float = 1e-2
    commit_weight: float = 1e-2
    discriminator_width: int = 1000
    discriminator_depth: int = 6
    weight_init: WeightInit = "paper"
    qlae_init: QLAEInit = "linspace"
    evaluate_on: EvaluateOn = "mean"

    def __post_init__(self) -> None:
        _check_fields(self)
        if self.image_size % 4:
            raise ValueError(
                f"image_size must be divisible by 4 (two 2x poolings): got {self.image_size}")
        if self.discriminator_depth < 2:
            raise ValueError(
                f"discriminator_depth must be at least 2: got {self.discriminator_depth}")
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size must be at least 2: got {self.codebook_size}")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, schedules and bookkeeping of one training run.

    Defaults are the paper's Appendix A (Adam, lr 1e-3 annealed by a cosine to 1.25e-6
    over the first 50k of 100k iterations, batch 256, tau = exp(-1e-5 t)).

    Parameters
    ----------
    steps : int, default 100_000
        Training iterations. One iteration of a Factor model is one VAE update and one
        discriminator update.
    batch_size : int, default 256
        Images per VAE update; the Factor models draw a second batch of the same size for
        the discriminator update.
    lr : float, default 1e-3
        Initial learning rate of the VAE optimiser.
    lr_min : float, default 1.25e-6
        Learning rate at the end of the cosine and afterwards.
    cosine_steps : int, default 50_000
        Iterations over which the learning rate is annealed.
    cosine_after : {"hold", "periodic"}, default "hold"
        Learning rate after ``cosine_steps``: kept at ``lr_min`` (the paper's text), or
        following the cosine on, back up to ``lr`` at ``2 * cosine_steps``, as torch's
        ``CosineAnnealingLR`` does when stepped past its period (the authors' code).
    tau_rate : float, default 1e-5
        Gumbel-softmax temperature ``tau = exp(-tau_rate * t)``.
    tau_min : float, default 0.0
        Floor of the temperature (0: none, as in the paper).
    discriminator_lr : float, default 1e-3
        Initial learning rate of the discriminator optimiser (same cosine schedule).
    betas : tuple of float, default (0.9, 0.999)
        Adam betas of the VAE optimiser.
    discriminator_betas : tuple of float, default (0.9, 0.999)
        Adam betas of the discriminator optimiser (the authors' code uses Adam's defaults).
    weight_decay : float, default 0.0
        Decoupled weight decay (AdamW) of the VAE optimiser; 0 gives plain Adam.
    seed : int, default 1
        Seed of the run (the authors' configs use 1).
    log_every : int, default 100
        Iterations between log lines.
    checkpoint_every : int, default 5_000
        Iterations between checkpoints (the authors' code saves every 5000 steps).
    metric_train_samples : int, default 10_000
        Images encoded to fit the metrics' predictors after training.
    metric_test_samples : int, default 5_000
        Held-out images encoded to evaluate them.
    """

    steps: int = 100_000
    batch_size: int = 256
    lr: float = 1e-3
    lr_min: float = 1.25e-6
    cosine_steps: int = 50_000
    cosine_after: CosineAfter = "hold"
    tau_rate: float = 1e-5
    tau_min: float = 0.0
    discriminator_lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    discriminator_betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    seed: int = 1
    log_every: int = 100
    checkpoint_every: int = 5_000
    metric_train_samples: int = 10_000
    metric_test_samples: int = 5_000

    def __post_init__(self) -> None:
        _check_fields(self)
        if self.lr_min > self.lr:
            raise ValueError(f"lr_min must not exceed lr: got lr_min={self.lr_min}, lr={self.lr}")
        for name in ("betas", "discriminator_betas"):
            value = getattr(self, name)
            if len(value) != 2 or not all(0.0 <= b < 1.0 for b in value):
                raise ValueError(f"{name} must be two numbers in [0, 1): got {value!r}")


# Largest int a field may hold: what torch and numpy index with (int64).
_MAX_INT = 2**63 - 1
# Fields that may be zero; every other int or float field must be strictly positive.
_MAY_BE_ZERO = frozenset({
    "beta", "gamma", "beta_nonneg", "beta_activity", "quantize_weight", "commit_weight",
    "tau_rate", "tau_min", "lr_min", "weight_decay", "seed", "cosine_steps",
})


def _check_fields(config: Any) -> None:
    """Check the type and range of every field of a config dataclass."""
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        expected = hints[field.name]
        origin = typing.get_origin(expected)
        if origin is Literal:
            choices = typing.get_args(expected)
            if value not in choices:
                raise ValueError(f"{field.name} must be one of {list(choices)}: got {value!r}")
        elif expected is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{field.name} must be an int: got {value!r}")
            if value > _MAX_INT:
                raise ValueError(f"{field.name} must be at most 2**63 - 1: got {value!r}")
        elif expected is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{field.name} must be a float: got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"{field.name} must be finite: got {value!r}")
        elif origin is tuple:
            if not isinstance(value, tuple) or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                raise TypeError(f"{field.name} must be a tuple of floats: got {value!r}")
        if expected in (int, float):
            may_be_zero = field.name in _MAY_BE_ZERO
            if value < 0 or (value == 0 and not may_be_zero):
                kind = "non-negative" if may_be_zero else "positive"
                raise ValueError(f"{field.name} must be {kind}: got {value!r}")


ConfigT = TypeVar("ConfigT", ModelConfig, TrainConfig)

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _parse_value(name: str, text: str, expected: Any) -> Any:
    """Convert the string ``text`` to the declared type ``expected`` of field ``name``."""
    origin = typing.get_origin(expected)
    try:
        if origin is Literal:
            return text  # checked against the choices by __post_init__
        if expected is bool:
            lowered = text.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError
        if expected is int:
            return int(text.strip().replace("_", ""))
        if expected is float:
            return float(text.strip().replace("_", ""))
        if origin is tuple:
            parts = [p for p in text.strip().strip("()").split(",") if p.strip()]
            return tuple(float(p) for p in parts)
        if expected is str:
            return text
    except ValueError:
        pass
    type_name = getattr(expected, "__name__", str(expected))
    raise ValueError(f"cannot read {name}={text!r} as {type_name}")


def with_overrides(config: ConfigT, overrides: Mapping[str, Any]) -> ConfigT:
    """Return a copy of ``config`` with some fields replaced, type-checked.

    Parameters
    ----------
    config : ModelConfig or TrainConfig
        The configuration to start from (unchanged).
    overrides : mapping of str to str or value
        Field name to new value. Strings (as typed on a command line, ``--set lr=3e-4``)
        are converted to the field's declared type: ints accept ``"100_000"``, floats
        ``"1e-3"``, tuples ``"0.9,0.999"``. Values of the right type are taken as they are.

    Returns
    -------
    ModelConfig or TrainConfig
        A new, validated config of the same class.

    Raises
    ------
    ValueError
        If a key is not a field of the config, or a value cannot be converted or is out of
        range.
    TypeError
        If a non-string value has the wrong type.

    Examples
    --------
    >>> with_overrides(TrainConfig(), {"lr": "3e-4", "steps": "2000"}).lr
    0.0003
    """
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"config must be a config dataclass instance: got {type(config).__name__}")
    hints = typing.get_type_hints(type(config))
    valid = [f.name for f in dataclasses.fields(config)]
    changes: dict[str, Any] = {}
    for name, value in overrides.items():
        if name not in hints:
            raise ValueError(
                f"unknown {type(config).__name__} field {name!r}; valid fields: {', '.join(valid)}")
        if isinstance(value, str) and hints[name] is not str:
            value = _parse_value(name, value, hints[name])
        elif typing.get_origin(hints[name]) is tuple and isinstance(value, list):
            value = tuple(value)
        changes[name] = value
    return dataclasses.replace(config, **changes)
