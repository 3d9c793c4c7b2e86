"""Generate ``examples/example.npz``: latents of a simulated, partly disentangled encoder.

The factors follow Shapes3D's structure (floor/wall/object hue, scale, shape,
orientation); the 10 latents are: four clean but non-linear codes of one factor each, a
pair that mixes wall and object hue (entangled), a code of shape plus scale, a
duplicated orientation code, and a dead (constant) unit. Scores are therefore high but
not perfect, which is what a quick-start should show.

Run from anywhere: ``python examples/make_example.py [--out PATH] [--seed N]``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

FACTOR_NAMES = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
FACTOR_SIZES = (10, 10, 10, 8, 4, 15)


def make_example(n_samples: int = 3000, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    factors = np.stack([rng.integers(0, size, n_samples) for size in FACTOR_SIZES], axis=1)
    unit = factors / (np.asarray(FACTOR_SIZES) - 1)  # each factor scaled to [0, 1]

    def noise(scale: float) -> np.ndarray:
        return scale * rng.standard_normal(n_samples)

    floor, wall, obj, scale, shape, orient = unit.T
    latents = np.stack([
        np.tanh(3 * (floor - 0.5)) + noise(0.02),          # floor hue, monotone
        np.sin(2.5 * scale) + noise(0.02),                 # scale, monotone on [0, 1]
        wall + obj + noise(0.03),                          # wall and object hue, entangled
        wall - obj + noise(0.03),
        shape + 0.3 * scale + noise(0.05),                 # mostly shape, some scale
        np.cos(np.pi * orient) + noise(0.1),              # orientation ...
        orient ** 2 + noise(0.1),                         # ... twice (not compact)
        np.zeros(n_samples),                               # a dead unit
        noise(1.0),                                        # a nuisance latent
        floor + noise(0.3),                                # a weak, noisy floor-hue code
    ], axis=1).astype(np.float32)
    return {"latents": latents, "factors": factors.astype(np.int64),
            "factor_names": np.asarray(FACTOR_NAMES), "factor_sizes": np.asarray(FACTOR_SIZES)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("example.npz"))
    parser.add_argument("--n-samples", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    np.savez_compressed(args.out, **make_example(args.n_samples, args.seed))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
