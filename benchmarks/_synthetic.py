"""Seeded MPI3D-sized scoring problems shared by the benchmarks."""
from __future__ import annotations

import numpy as np

MPI3D_SIZES = (4, 4, 2, 3, 3, 40, 40)


def mpi3d_like(n_samples: int, *, n_latents: int = 14, seed: int = 0):
    """Latents of a plausible, imperfect encoder of MPI3D-like factors.

    Two latents per factor where the budget allows: a noisy monotone code, a noisy
    non-monotone code, an entangled pair, and dead units. Returns (latents float32 (N, d),
    factors int64 (N, 7)).
    """
    rng = np.random.default_rng(seed)
    sizes = np.asarray(MPI3D_SIZES)
    factors = np.stack([rng.integers(0, s, n_samples) for s in sizes], axis=1)
    unit = factors / (sizes - 1)
    columns = []
    for i in range(len(sizes)):
        columns.append(np.tanh(2 * unit[:, i] - 1) + 0.05 * rng.standard_normal(n_samples))
        columns.append(np.cos(2.5 * unit[:, i]) + 0.2 * rng.standard_normal(n_samples))
    latents = np.stack(columns, axis=1)[:, :n_latents]
    latents[:, 2], latents[:, 3] = (latents[:, 2] + latents[:, 3],
                                    latents[:, 2] - latents[:, 3])  # entangle two codes
    latents[:, 7] = 0.0  # a dead unit
    return latents.astype(np.float32), factors.astype(np.int64)
