"""``toysprites``: a dSprites-like set of white shapes on a black canvas, no download.

Factors: shape 3 (square, ellipse, heart), scale 6 (0.5 .. 1), orientation 12 (0 .. 82.5
degrees), pos_x 16 and pos_y 16: 55296 images.  Orientations stay inside a quarter turn,
unlike dSprites' full turn, because a square turned by 90 degrees (or an ellipse by 180)
is the same image: here two different factor tuples never give the same image.

How it is fast: the 216 (shape, scale, orientation) sprites are rasterised once, with 8x8
supersampling for anti-aliased edges, into small patches; positions are whole-pixel steps
(``image_size / 32`` pixels), so an image is one patch pasted into a black canvas.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .base import FactorDataset

__all__ = ["ToySprites"]

SPRITE_FACTOR_NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")
SPRITE_FACTOR_SIZES = (3, 6, 12, 16, 16)
SPRITE_SHAPES = ("square", "ellipse", "heart")

# At scale 1 a sprite reaches this far from its centre, in canvas widths.
_MAX_RADIUS = 0.21
_SUPERSAMPLING = 8


def _sprite_factor_values() -> tuple[np.ndarray, ...]:
    orientations = np.deg2rad(np.arange(12) * 7.5)
    positions = np.linspace(0.0, 1.0, 16)
    return (np.arange(3, dtype=np.float64), np.linspace(0.5, 1.0, 6), orientations,
            positions, positions.copy())


def _inside(shape: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Whether points (x right, y up, sprite frame, radius about 1) lie in the shape."""
    if shape == 0:  # square, half side 0.7: its corners reach radius 0.99
        return (np.abs(x) <= 0.7) & (np.abs(y) <= 0.7)
    if shape == 1:  # ellipse, 2:1
        return (x / 1.0) ** 2 + (y / 0.5) ** 2 <= 1.0
    # heart: the classic sextic curve, scaled to reach radius about 1, point down
    hx, hy = x * 1.15, y * 1.15 + 0.1
    return (hx * hx + hy * hy - 1.0) ** 3 - hx * hx * hy ** 3 <= 0.0


@lru_cache(maxsize=4)
def sprite_patches(image_size: int) -> np.ndarray:
    """Rasterise every (shape, scale, orientation) sprite into a square patch.

    Returns
    -------
    ndarray of shape (3, 6, 12, patch, patch), uint8, read-only
        ``patch = 2 * ceil(_MAX_RADIUS * image_size) + 2``; the sprite's centre lies on
        the patch's central pixel corner.
    """
    half = int(np.ceil(_MAX_RADIUS * image_size)) + 1
    patch = 2 * half
    _, scales, orientations, _, _ = _sprite_factor_values()
    # Sample positions inside each pixel, relative to the patch centre, in pixels.
    sub = (np.arange(patch * _SUPERSAMPLING) + 0.5) / _SUPERSAMPLING - half
    py, px = np.meshgrid(sub, sub, indexing="ij")
    out = np.empty((3, len(scales), len(orientations), patch, patch), dtype=np.uint8)
    for k, scale in enumerate(scales):
        radius = scale * _MAX_RADIUS * image_size
        for o, angle in enumerate(orientations):
            c, s = np.cos(angle), np.sin(angle)
            # Rotate sample points into the sprite frame; y flips so that "up" is up.
            x = (c * px + s * -py) / radius
            y = (-s * px + c * -py) / radius
            for shape in range(3):
                hits = _inside(shape, x, y).reshape(patch, _SUPERSAMPLING, patch, _SUPERSAMPLING)
                coverage = hits.mean(axis=(1, 3))
                out[shape, k, o] = np.round(coverage * 255.0).astype(np.uint8)
    out.setflags(write=False)
    return out


class ToySprites(FactorDataset):
    """dSprites-like white sprites on a black canvas: no download, any sample on demand.

    Parameters
    ----------
    image_size : int, default 64
        A multiple of 32 (64 or 32): positions move by ``image_size / 32`` pixels.
    seed : int, default 0
        Accepted for a uniform interface; the images do not depend on it.

    Notes
    -----
    Factors: shape (square, ellipse, heart), scale (6 values 0.5 .. 1), orientation
    (12 angles 0 .. 82.5 degrees, in radians), pos_x and pos_y (16 values 0 .. 1; the
    sprite centre moves from a quarter to three quarters of the canvas; pos_y 0 is the
    top).  Images are grey (R = G = B).
    """

    def __init__(self, *, image_size: int = 64, seed: int = 0):
        self.name = "toysprites"
        self.factor_names = SPRITE_FACTOR_NAMES
        self.factor_sizes = SPRITE_FACTOR_SIZES
        self.factor_values = _sprite_factor_values()
        self.image_size = int(image_size)
        self.seed = int(seed)
        if self.image_size < 32 or self.image_size % 32:
            raise ValueError(
                "toysprites: image_size must be a multiple of 32 (64 or 32): "
                f"received {image_size}")

    def _images_uint8_at(self, indices: np.ndarray) -> np.ndarray:
        patches = sprite_patches(self.image_size)
        patch = patches.shape[-1]
        size = self.image_size
        step = size // 32
        factors = self.factors(indices)
        # Top-left corner of the patch: centres run from size/4 in whole-pixel steps.
        left = size // 4 + step * factors[:, 3] - patch // 2
        top = size // 4 + step * factors[:, 4] - patch // 2
        grey = np.zeros((len(indices), size, size), dtype=np.uint8)
        rows = top[:, None, None] + np.arange(patch)[None, :, None]
        cols = left[:, None, None] + np.arange(patch)[None, None, :]
        images = np.arange(len(indices))[:, None, None]
        grey[images, rows, cols] = patches[factors[:, 0], factors[:, 1], factors[:, 2]]
        return np.repeat(grey[..., None], 3, axis=-1)
