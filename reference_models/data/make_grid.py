"""Draw sample grids of the procedural datasets for the README.

Usage::

    python -m reference_models.data.make_grid --out docs

writes ``docs/toyshapes_grid.png`` and ``docs/toysprites_grid.png``: random samples at
64x64 and 32x32 (shown twice as large), then one traversal row per factor (that factor
through all its values, the others fixed).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .registry import get_dataset

__all__ = ["sample_grid"]

_GAP = 2
_LABEL_WIDTH = 92
_BACKGROUND = (255, 255, 255)


def _row(images: np.ndarray, scale: int = 1) -> Image.Image:
    """Images side by side with a gap, each enlarged ``scale`` times (nearest)."""
    n, size = len(images), images.shape[1] * scale
    row = Image.new("RGB", (n * size + (n - 1) * _GAP, size), _BACKGROUND)
    for i, image in enumerate(images):
        tile = Image.fromarray(image).resize((size, size), Image.NEAREST)
        row.paste(tile, (i * (size + _GAP), 0))
    return row


def sample_grid(name: str, *, n_random: int = 16, seed: int = 0,
                base: tuple[int, ...] | None = None) -> Image.Image:
    """A labelled sample grid of dataset ``name`` (random samples and traversals).

    Parameters
    ----------
    name : str
        A procedural dataset (``toyshapes`` or ``toysprites``).
    n_random : int, default 16
        Random samples per size (64 and 32 pixels).
    seed : int, default 0
        Seed of the random samples.
    base : tuple of int, optional
        Factor indices the traversals start from; default the middle of each factor.
    """
    big = get_dataset(name, image_size=64)
    small = get_dataset(name, image_size=32)
    random_state = np.random.RandomState(seed)
    rows: list[tuple[str, Image.Image]] = []
    factors = big.sample_factors(n_random, random_state)
    half = n_random // 2
    rows.append(("random 64px", _row(big.images_uint8(big.index_of(factors[:half])))))
    rows.append(("", _row(big.images_uint8(big.index_of(factors[half:])))))
    rows.append(("random 32px", _row(small.images_uint8(small.index_of(factors[:half])), 2)))
    base = np.asarray(base if base is not None else [s // 2 for s in big.factor_sizes])
    for column, (factor, size) in enumerate(zip(big.factor_names, big.factor_sizes)):
        traversal = np.repeat(base[None], size, axis=0)
        traversal[:, column] = np.arange(size)
        rows.append((factor, _row(big.images_uint8(big.index_of(traversal)))))

    width = _LABEL_WIDTH + max(image.width for _, image in rows)
    height = sum(image.height for _, image in rows) + _GAP * (len(rows) - 1)
    grid = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(grid)
    y = 0
    for label, image in rows:
        grid.paste(image, (_LABEL_WIDTH, y))
        draw.text((4, y + image.height // 2 - 5), label, fill=(0, 0, 0))
        y += image.height + _GAP
    return grid


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reference_models.data.make_grid",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs", help="output folder (default docs)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, base in (("toyshapes", (0, 6, 3, 5, 1, 7)), ("toysprites", None)):
        path = out / f"{name}_grid.png"
        sample_grid(name, base=base).save(path, optimize=True)
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
