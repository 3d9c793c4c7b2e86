"""Named configurations: ``get_preset(model, dataset, preset) -> (ModelConfig, TrainConfig)``.

Presets
-------
``"paper"``
    What produced the paper's Table 1, for shapes3d, isaac3d and mpi3d: the paper's
    Appendix A, A.3 and Table 3 (64x64 images, n = m = 128, K = 64, QLAE 16 values per
    latent, d = 2 x factors, batch 256, Adam lr 1e-3 cosine-annealed to 1.25e-6 over 50k
    iterations, Table 3's loss weights) and, where the authors' code differs from the
    text or the text is silent, the code: a Factor model runs 50k iterations (their
    ``max_steps=100000`` counts both optimiser steps of an iteration) with
    ``tau = exp(-2e-5 t)``; the other models run 100k iterations with the cosine stepped
    on past its 50k period; QLAE's values start from N(0, 1). beta-VAE and FactorVAE are
    evaluated on the posterior mean (disentanglement_lib's convention; the authors scored
    a posterior sample, ``evaluate_on="sample"``). ``docs/presets.md`` lists each
    difference and the ``--set`` that gives the other choice.
``"cpu"``
    A small network on 32x32 images that trains in minutes on two CPU cores, 3000
    iterations of batch 32 for every model, the cosine over the whole run and tau reaching
    exp(-1) at the end (the schedule shape of the authors' Factor models), QLAE's start
    and the evaluation of ``"paper"``. Loss weights: the dataset's Table 3 row (Shapes3D's
    for any other dataset: the simplest of the three and the closest to a synthetic scene
    of a few objects), with the regulariser weights (beta, gamma) multiplied by
    :data:`CPU_WEIGHT_SCALE` and by the sweep's correction :data:`CPU_SWEEP_FACTOR`
    (``docs/presets.md``).
``"smoke"``
    A tiny network and a few steps, for tests. Weights as for ``"cpu"``.

In every preset the latent size is ``d = 2 x number of factors`` (paper Section 3.3), and the
schedules are fractions of the run: ``steps=N`` stretches the cosine period and the
temperature rate with the run (:func:`stretch_schedules`).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from reference_models.config import ModelConfig, TrainConfig

__all__ = ["get_preset", "list_presets", "stretch_schedules", "FACTOR_COUNTS", "PAPER_WEIGHTS",
           "PAPER_DATASETS", "CPU_WEIGHT_SCALE", "CPU_SWEEP_FACTOR"]

# Generative factors per dataset (paper Appendix A.1 for the first three; the procedural
# datasets of this project for the others).
FACTOR_COUNTS: dict[str, int] = {
    "shapes3d": 6,
    "isaac3d": 9,
    "mpi3d": 7,
    "toyshapes": 6,
    "toysprites": 5,
}

PAPER_DATASETS: tuple[str, ...] = ("shapes3d", "isaac3d", "mpi3d")

# The paper's Table 3 ("Hyperparameters of the best performing models"), per model, the
# ModelConfig fields in the order (Shapes3D, Isaac3D, MPI3D).
_TABLE_3: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "ae": ({}, {}, {}),
    "betavae": ({"beta": 1e-4}, {"beta": 5e-5}, {"beta": 1e-5}),
    "factorvae": ({"beta": 1e-4, "gamma": 1e-4}, {"beta": 5e-5, "gamma": 5e-5},
                  {"beta": 1e-5, "gamma": 1e-5}),
    "bioae": ({"beta_nonneg": 1.0, "beta_activity": 1e-2},
              {"beta_nonneg": 1.0, "beta_activity": 0.1},
              {"beta_nonneg": 1.0, "beta_activity": 1e-2}),
    # lambda_quantize = lambda_commit = 1e-2, n_v = 16 values per latent on all datasets.
    "qlae": ({"quantize_weight": 1e-2, "commit_weight": 1e-2, "codebook_size": 16},) * 3,
    "dvae": ({"beta": 5e-3}, {"beta": 1e-5}, {"beta": 5e-5}),
    "qvae": ({"beta": 1e-3}, {"beta": 5e-5}, {"beta": 5e-5}),
    "factordvae": ({"beta": 5e-3, "gamma": 5e-4}, {"beta": 1e-5, "gamma": 1e-5},
                   {"beta": 5e-5, "gamma": 5e-6}),
    "factorqvae": ({"beta": 1e-3, "gamma": 1e-4}, {"beta": 5e-5, "gamma": 5e-5},
                   {"beta": 5e-5, "gamma": 1e-6}),
}
# The vector-quantisation ablation (paper Table 2, Shapes3D, M of 64 x 8 or 64 x 16) does not
# report its weights; we take those of the scalar model it ablates, with D = 8.
_TABLE_3["vqvae"] = tuple({**row, "codebook_dim": 8} for row in _TABLE_3["qvae"])
_TABLE_3["factorvqvae"] = tuple({**row, "codebook_dim": 8} for row in _TABLE_3["factorqvae"])

PAPER_WEIGHTS: dict[tuple[str, str], dict[str, Any]] = {
    (model, dataset): dict(row)
    for model, rows in _TABLE_3.items()
    for dataset, row in zip(PAPER_DATASETS, rows)
}

# Regulariser weights at the CPU scale (docs/presets.md): Table 3's weights times the ratio of
# RMS reconstruction errors of the plain autoencoder, CPU (MSE x 1e4 = 82.5) over the paper's
# Shapes3D (0.3), so that the regularisers pull against the reconstruction gradient as hard as
# at the paper's scale.
CPU_WEIGHT_SCALE: float = math.sqrt(82.5 / 0.3)
# The sweep's correction of the rule, per weight, for every model that has it (1: the rule):
# at the rule's beta the KL term keeps a 3000-iteration run on its early plateau of blurred
# colours, where the reconstruction gradient through the codes is still weak.
CPU_SWEEP_FACTOR: dict[str, float] = {"beta": 1 / 3, "gamma": 1.0}

# Architecture and training per preset; the model- and dataset-specific fields come on top.
_PRESET_MODEL: dict[str, dict[str, Any]] = {
    # Appendix A.3: 64x64 images, n = m = 128; the decoder's first map has 64 channels as
    # in the authors' code (the paper writes 16); discriminator 6 x 1000 as in their code.
    "paper": dict(image_size=64, width=128, dense_width=128, decoder_channels=64,
                  codebook_size=64, discriminator_width=1000, discriminator_depth=6),
    # One residual block per resolution at n = 32: n = 16 would leave the residual
    # branches 4 channels wide.
    "cpu": dict(image_size=32, width=32, dense_width=64, decoder_channels=16,
                blocks_per_group=1, codebook_size=64, discriminator_width=256,
                discriminator_depth=6),
    "smoke": dict(image_size=16, width=4, dense_width=16, decoder_channels=4,
                  codebook_size=8, discriminator_width=16, discriminator_depth=3),
}
_PRESET_TRAIN: dict[str, dict[str, Any]] = {
    # Appendix A: 100k iterations, batch 256, Adam 1e-3 -> 1.25e-6 over 50k, tau = exp(-1e-5 t);
    # the Factor models' iterations and temperature come from _PAPER_CODE_TRAIN.
    "paper": dict(steps=100_000, batch_size=256, lr=1e-3, lr_min=1.25e-6, cosine_steps=50_000,
                  cosine_after="periodic", tau_rate=1e-5, discriminator_lr=1e-3,
                  log_every=100, checkpoint_every=5_000),
    # lr 3e-3: at 1e-3 the short run spends its first ~1300 iterations on a plateau of
    # blurred colours. The cosine spans the whole run (a short run cannot afford a flat
    # tail at 1e-6) and tau reaches exp(-1) at the end, as in the authors' Factor runs.
    "cpu": dict(steps=3_000, batch_size=32, lr=3e-3, lr_min=1.25e-6, cosine_steps=3_000,
                tau_rate=1.0 / 3_000, discriminator_lr=1e-3, log_every=50,
                checkpoint_every=500),
    "smoke": dict(steps=4, batch_size=8, lr=1e-3, lr_min=1.25e-6, cosine_steps=2,
                  tau_rate=0.25, discriminator_lr=1e-3, log_every=1, checkpoint_every=2,
                  metric_train_samples=64, metric_test_samples=32),
}
_FACTOR_MODELS: tuple[str, ...] = ("factorvae", "factordvae", "factorqvae", "factorvqvae")
# The authors' Lightning loop counts the two optimiser steps of a Factor model's iteration,
# so max_steps=100000 stops after 50k iterations, the cosine (stepped once per iteration)
# ends exactly at the end, and tau = exp(-1e-5 global_step) is exp(-2e-5 t) per iteration.
_PAPER_CODE_TRAIN: dict[str, Any] = dict(steps=50_000, cosine_after="hold", tau_rate=2e-5)
# QLAE's values start as in the code that produced Table 1 (random, so that code indices
# carry no order that QVAE's N(0, 1) codebook lacks), in every preset.
_MODEL_CHOICES: dict[str, dict[str, Any]] = {"qlae": {"qlae_init": "normal"}}
# Preset-specific changes of a model's fields (applied last): in smoke, QLAE gets 4 values
# per latent and the VQ ablation vectors of size 2.
_PRESET_OVERRIDES: dict[tuple[str, str], dict[str, Any]] = {
    ("smoke", "qlae"): {"codebook_size": 4},
    ("smoke", "vqvae"): {"codebook_dim": 2},
    ("smoke", "factorvqvae"): {"codebook_dim": 2},
}


def stretch_schedules(train_config: TrainConfig, steps: int) -> TrainConfig:
    """``train_config`` run for ``steps`` iterations with its schedules stretched to match.

    The cosine period and the temperature rate keep their proportion to the run: a preset
    whose cosine ends half-way and whose tau reaches exp(-1) at the end does the same over
    ``steps``. Learning rates, batch and bookkeeping stay.

    Parameters
    ----------
    train_config : TrainConfig
    steps : int
        New number of iterations, positive.

    Returns
    -------
    TrainConfig

    Examples
    --------
    >>> _, train = get_preset("factorqvae", "toyshapes", "cpu")
    >>> longer = stretch_schedules(train, 6000)
    >>> longer.steps, longer.cosine_steps, longer.tau_rate * 6000
    (6000, 6000, 1.0)
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int: got {steps!r}")
    ratio = steps / train_config.steps
    cosine_steps = train_config.cosine_steps
    if cosine_steps:
        cosine_steps = max(1, round(cosine_steps * ratio))
    return dataclasses.replace(train_config, steps=steps, cosine_steps=cosine_steps,
                               tau_rate=train_config.tau_rate / ratio)


def list_presets() -> list[str]:
    """Names of the presets."""
    return list(_PRESET_MODEL)


def get_preset(model: str, dataset: str, preset: str = "paper", *,
               n_factors: int | None = None,
               steps: int | None = None) -> tuple[ModelConfig, TrainConfig]:
    """Model and training configuration of ``model`` on ``dataset`` in a named preset.

    Parameters
    ----------
    model : str
        A registered model name (see ``reference_models.models.registry.list_models``).
    dataset : str
        Dataset name. The latent size is ``2 * n_factors``; the factor count comes from
        ``FACTOR_COUNTS`` unless given.
    preset : {"paper", "cpu", "smoke"}, default "paper"
        See the module docstring. ``"paper"`` exists for shapes3d, isaac3d and mpi3d only.
    n_factors : int, optional
        Number of generative factors, for a dataset not in ``FACTOR_COUNTS`` or to
        override it.
    steps : int, optional
        Train for this many iterations instead of the preset's, with the schedules
        stretched to the new length (:func:`stretch_schedules`).

    Returns
    -------
    (ModelConfig, TrainConfig)

    Raises
    ------
    ValueError
        Unknown model, preset or dataset (the message lists the valid ones).

    Examples
    --------
    >>> model_config, train_config = get_preset("factorqvae", "shapes3d", "paper")
    >>> model_config.latent_dim, model_config.beta, model_config.gamma
    (12, 0.001, 0.0001)
    >>> train_config.steps, train_config.tau_rate  # a Factor model's iteration: 2 optimiser steps
    (50000, 2e-05)
    """
    if model not in _TABLE_3:
        raise ValueError(f"unknown model {model!r}; valid models: {', '.join(sorted(_TABLE_3))}")
    if preset not in _PRESET_MODEL:
        raise ValueError(f"unknown preset {preset!r}; valid presets: {', '.join(_PRESET_MODEL)}")
    if not isinstance(dataset, str):
        raise TypeError(f"dataset must be a string: got {type(dataset).__name__}")
    dataset_key = dataset.lower()
    if n_factors is None:
        if dataset_key not in FACTOR_COUNTS:
            raise ValueError(f"unknown number of factors for dataset {dataset!r}; pass n_factors "
                             f"or use one of: {', '.join(FACTOR_COUNTS)}")
        n_factors = FACTOR_COUNTS[dataset_key]
    if isinstance(n_factors, bool) or not isinstance(n_factors, int) or n_factors < 1:
        raise ValueError(f"n_factors must be a positive int: got {n_factors!r}")
    if preset == "paper" and dataset_key not in PAPER_DATASETS:
        raise ValueError(f"the 'paper' preset covers {', '.join(PAPER_DATASETS)}: got dataset "
                         f"{dataset!r}; use preset 'cpu' or 'smoke'")
    weights_from = dataset_key if dataset_key in PAPER_DATASETS else "shapes3d"
    weights = dict(PAPER_WEIGHTS[(model, weights_from)])
    if preset != "paper":
        for field, factor in CPU_SWEEP_FACTOR.items():
            if field in weights:
                weights[field] = weights[field] * CPU_WEIGHT_SCALE * factor
    fields = {
        **_PRESET_MODEL[preset],
        **weights,
        **_MODEL_CHOICES.get(model, {}),
        **_PRESET_OVERRIDES.get((preset, model), {}),
        "latent_dim": 2 * n_factors,
    }
    model_config = ModelConfig(**fields)
    # QLAE: the paper trains with the FactorQVAE code's Adam without weight decay (the QLAE
    # authors use AdamW 0.1); set TrainConfig.weight_decay to follow them instead.
    train_fields = dict(_PRESET_TRAIN[preset])
    if preset == "paper" and model in _FACTOR_MODELS:
        train_fields.update(_PAPER_CODE_TRAIN)
    train_config = TrainConfig(**train_fields)
    if steps is not None:
        train_config = stretch_schedules(train_config, steps)
    return model_config, train_config
