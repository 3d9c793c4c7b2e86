"""``toyshapes``: a Shapes3D-like scene rendered in numpy, no download.

A room corner with floor and two walls under a sky, and one shaded object with its shadow,
seen by a camera that orbits the object.  Six factors with the structure and label values
of DeepMind's Shapes3D: floor_hue 10, wall_hue 10, object_hue 10, scale 8, shape 4
(cube, cylinder, sphere, capsule) and orientation 15 (camera azimuth -30 .. 30 degrees, so
the walls' corner, the cube's faces and the shadow move with it).

How it is fast: the geometry depends on (scale, shape, orientation) only, 480 combinations.
Those are ray-cast once into *shading templates*: for every pixel, how much of it is floor,
wall and object light (coverage times shading), plus a fixed RGB term for sky and specular
highlights.  An image is then ``template @ hue colours + fixed term``, a handful of
element-wise operations per image, so any sample renders on demand in microseconds and
nothing is stored on disk.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .base import FactorDataset
from .shapes3d import SHAPES3D_FACTOR_NAMES, SHAPES3D_FACTOR_SIZES, shapes3d_factor_values

__all__ = ["ToyShapes"]

SHAPE_NAMES = ("cube", "cylinder", "sphere", "capsule")


# Scene layout, in world units; the object stands on the floor at the origin.
_CAMERA_DISTANCE = 4.4
_CAMERA_HEIGHT = 1.6
_LOOK_AT_HEIGHT = 0.7
_FOCAL = 3.6                # image half-height is 1: a vertical field of view of ~31 deg
_CORNER_DEPTH = 3.2        # the walls meet on the line x = 0, z = _CORNER_DEPTH
_WALL_HEIGHT = 1.4
_CUBE_YAW = np.deg2rad(20.0)
_TO_LIGHT = np.array([-0.8, 1.0, -0.35]) / np.linalg.norm([-0.8, 1.0, -0.35])
_SKY_TOP = np.array([0.50, 0.74, 0.93])
_SKY_HORIZON = np.array([0.72, 0.87, 0.97])
# Hue colours: HSV with this saturation and value.
_SATURATION = 0.9
_VALUE = 1.0
# Rays per image side used to build templates (averaged down to the image size).
_RAYS_PER_SIDE = 128


def hues_to_rgb(hues: np.ndarray, saturation: float = _SATURATION,
                value: float = _VALUE) -> np.ndarray:
    """HSV to RGB for an array of hues in [0, 1); returns shape ``hues.shape + (3,)``."""
    hues = np.asarray(hues, dtype=np.float64)[..., None]
    # The closed form of HSV -> RGB: channel offsets 5, 3, 1 give R, G, B.
    k = (np.array([5.0, 3.0, 1.0]) + hues * 6.0) % 6.0
    return value - value * saturation * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


# --------------------------------------------------------------------- ray intersections
# Each returns (t, normal) for rays origin + t * direction; t = inf where the ray misses.
def _hit_vertical_cylinder(origin, direction, radius, y0, y1):
    a = direction[:, 0] ** 2 + direction[:, 2] ** 2
    b = 2 * (origin[:, 0] * direction[:, 0] + origin[:, 2] * direction[:, 2])
    c = origin[:, 0] ** 2 + origin[:, 2] ** 2 - radius ** 2
    disc = b * b - 4 * a * c
    ok = (disc >= 0) & (a > 1e-12)
    sq = np.sqrt(np.where(ok, disc, 0))
    t = np.where(ok, (-b - sq) / np.where(a > 1e-12, 2 * a, 1), np.inf)
    y = origin[:, 1] + t * direction[:, 1]
    t = np.where((t > 1e-6) & (y >= y0) & (y <= y1), t, np.inf)
    point = origin + t[:, None] * direction
    normal = np.stack([point[:, 0], np.zeros_like(t), point[:, 2]], 1) / radius
    return t, normal


def _hit_sphere(origin, direction, center, radius):
    rel = origin - center
    b = np.einsum("ij,ij->i", rel, direction)
    c = np.einsum("ij,ij->i", rel, rel) - radius ** 2
    disc = b * b - c
    t = np.where(disc >= 0, -b - np.sqrt(np.maximum(disc, 0)), np.inf)
    t = np.where(t > 1e-6, t, np.inf)
    normal = (origin + np.where(np.isfinite(t), t, 0)[:, None] * direction - center) / radius
    return t, normal


def _hit_disc(origin, direction, height, radius):
    safe = np.where(np.abs(direction[:, 1]) > 1e-12, direction[:, 1], 1e-12)
    t = (height - origin[:, 1]) / safe
    x = origin[:, 0] + t * direction[:, 0]
    z = origin[:, 2] + t * direction[:, 2]
    t = np.where((t > 1e-6) & (x * x + z * z <= radius ** 2) & (direction[:, 1] < 0), t, np.inf)
    normal = np.zeros_like(origin)
    normal[:, 1] = 1.0
    return t, normal


def _nearest(*hits):
    ts = np.stack([h[0] for h in hits], 0)
    which = np.argmin(ts, 0)
    t = ts[which, np.arange(ts.shape[1])]
    normals = np.stack([h[1] for h in hits], 0)[which, np.arange(ts.shape[1])]
    return t, normals


# Height and horizontal reach of each shape at scale 1 (for a bounding sphere).
_SHAPE_EXTENT = {0: (0.92, 0.46 * np.sqrt(2)), 1: (1.0, 0.5), 2: (1.12, 0.56), 3: (1.4, 0.35)}


def _hit_object(shape: int, scale: float, origin, direction):
    """Intersect rays with object ``shape`` of size ``scale`` standing at the origin.

    Only rays that pass through the object's bounding sphere are traced exactly: most
    rays miss the object, and this makes building the templates several times faster.
    """
    height, reach = _SHAPE_EXTENT[shape]
    center = np.array([0.0, 0.5 * height * scale, 0.0])
    bound = scale * np.hypot(0.5 * height, reach) * 1.01
    rel = origin - center
    b = np.einsum("ij,ij->i", rel, direction)
    c = np.einsum("ij,ij->i", rel, rel) - bound ** 2
    near = np.nonzero((b * b - c >= 0) & ((b < 0) | (c < 0)))[0]
    t = np.full(len(origin), np.inf)
    normal = np.zeros_like(origin)
    if len(near):
        t[near], normal[near] = _trace_object(shape, scale, origin[near], direction[near])
    return t, normal


def _trace_object(shape: int, scale: float, origin, direction):
    """Exact intersection of rays with object ``shape`` (see :func:`_hit_object`)."""
    if shape == 0:  # cube, yawed so that its faces turn visibly with the camera
        half = 0.5 * 0.92 * scale
        c, s = np.cos(_CUBE_YAW), np.sin(_CUBE_YAW)
        rot = np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]])  # world -> cube frame
        o = origin @ rot.T - np.array([0, half, 0])
        d = direction @ rot.T
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / np.where(np.abs(d) > 1e-12, d, 1e-12)
        t0 = (-half - o) * inv
        t1 = (half - o) * inv
        near = np.minimum(t0, t1)
        far = np.maximum(t0, t1)
        t_enter = near.max(1)
        t_exit = far.min(1)
        t = np.where((t_enter <= t_exit) & (t_enter > 1e-6), t_enter, np.inf)
        axis = near.argmax(1)
        normal_local = np.zeros_like(o)
        normal_local[np.arange(len(o)), axis] = -np.sign(d[np.arange(len(o)), axis])
        return t, normal_local @ rot
    if shape == 1:  # cylinder with a flat top
        radius, height = 0.5 * scale, 1.0 * scale
        return _nearest(_hit_vertical_cylinder(origin, direction, radius, 0.0, height),
                        _hit_disc(origin, direction, height, radius))
    if shape == 2:  # sphere resting on the floor
        radius = 0.56 * scale
        return _hit_sphere(origin, direction, np.array([0.0, radius, 0.0]), radius)
    # capsule: a tall pill
    radius, height = 0.35 * scale, 1.4 * scale
    return _nearest(
        _hit_vertical_cylinder(origin, direction, radius, radius, height - radius),
        _hit_sphere(origin, direction, np.array([0.0, radius, 0.0]), radius),
        _hit_sphere(origin, direction, np.array([0.0, height - radius, 0.0]), radius))


def _camera_rays(azimuth_deg: float, rays_per_side: int):
    azimuth = np.deg2rad(azimuth_deg)
    eye = np.array([_CAMERA_DISTANCE * np.sin(azimuth), _CAMERA_HEIGHT,
                    -_CAMERA_DISTANCE * np.cos(azimuth)])
    forward = np.array([0.0, _LOOK_AT_HEIGHT, 0.0]) - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(np.array([0.0, 1.0, 0.0]), forward)
    right /= np.linalg.norm(right)
    up = np.cross(forward, right)
    coords = (np.arange(rays_per_side) + 0.5) / rays_per_side * 2 - 1
    v, u = np.meshgrid(-coords, coords, indexing="ij")  # rows top to bottom
    direction = (forward[None] * _FOCAL + u.reshape(-1, 1) * right[None]
                 + v.reshape(-1, 1) * up[None])
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    origin = np.broadcast_to(eye, direction.shape).copy()
    return origin, direction


def _surface_texture(u: np.ndarray, v: np.ndarray, seed: int, amplitude: float) -> np.ndarray:
    """A smooth, seed-fixed brightness texture (a few random plane waves) around 1."""
    rng = np.random.RandomState(seed)
    out = np.zeros_like(u)
    for _ in range(6):
        angle = rng.uniform(0, np.pi)
        freq = rng.uniform(2.0, 6.0)
        phase = rng.uniform(0, 2 * np.pi)
        out += np.sin(freq * (np.cos(angle) * u + np.sin(angle) * v) + phase)
    return 1.0 + amplitude * out / 6.0


def _render_orientation(azimuth_deg: float, seed: int, rays_per_side: int):
    """Ray-cast every (shape, scale) at one orientation.

    Returns
    -------
    weights : ndarray (n_shapes, n_scales, rays, 3)
        Floor, wall and object light per ray (each multiplies that region's hue colour).
    fixed : ndarray (n_shapes, n_scales, rays, 3)
        RGB light that does not depend on the hues (sky, specular highlights).
    """
    origin, direction = _camera_rays(azimuth_deg, rays_per_side)
    n = len(direction)

    # Background: floor y = 0 and the two walls z = corner - |x| (x <= 0 left, x >= 0 right).
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(direction[:, 1] < 0, -origin[:, 1] / direction[:, 1], np.inf)
        # left wall: x - z + corner = 0; right wall: x + z - corner = 0
        t_left = (-(origin[:, 0] - origin[:, 2] + _CORNER_DEPTH)
                  / (direction[:, 0] - direction[:, 2]))
        t_right = (-(origin[:, 0] + origin[:, 2] - _CORNER_DEPTH)
                   / (direction[:, 0] + direction[:, 2]))
    x_left = origin[:, 0] + t_left * direction[:, 0]
    x_right = origin[:, 0] + t_right * direction[:, 0]
    t_left = np.where((t_left > 0) & (x_left <= 0), t_left, np.inf)
    t_right = np.where((t_right > 0) & (x_right >= 0), t_right, np.inf)
    t_wall = np.minimum(t_left, t_right)
    on_left = t_left <= t_right
    t_background = np.minimum(t_floor, t_wall)
    point = origin + np.where(np.isfinite(t_background), t_background, 0)[:, None] * direction
    is_floor = np.isfinite(t_floor) & (t_floor <= t_wall)
    is_wall = ~is_floor & np.isfinite(t_wall) & (point[:, 1] <= _WALL_HEIGHT)
    is_sky = ~is_floor & ~is_wall

    # Background shading: Lambert with ambient light; the floor darkens into the distance
    # and towards the corner so that the room reads as a room.
    wall_normal = np.where(on_left[:, None], np.array([1.0, 0, -1.0]) / np.sqrt(2),
                           np.array([-1.0, 0, -1.0]) / np.sqrt(2))
    wall_light = 0.45 + 0.75 * np.clip(wall_normal @ _TO_LIGHT, 0, 1)
    along_wall = np.where(on_left, -point[:, 0], point[:, 0]) * np.sqrt(2)
    wall_light = wall_light * (0.92 + 0.08 * np.clip(point[:, 1] / _WALL_HEIGHT, 0, 1))
    wall_light = wall_light * _surface_texture(along_wall, point[:, 1], seed + 1, 0.05)
    corner_distance = _CORNER_DEPTH - np.abs(point[:, 0]) - point[:, 2]
    floor_light = (0.42 + 0.5 * _TO_LIGHT[1]) * (0.86 + 0.14 * np.clip(corner_distance / 3.0, 0, 1))
    floor_light = floor_light * _surface_texture(point[:, 0], point[:, 2], seed, 0.05)

    coords = np.linspace(1, -1, rays_per_side)
    sky = _SKY_HORIZON + (_SKY_TOP - _SKY_HORIZON) * np.clip(
        np.repeat(coords, rays_per_side)[:, None] * 0.5 + 0.5, 0, 1)

    half_vector = _TO_LIGHT[None] - direction
    half_vector /= np.linalg.norm(half_vector, axis=1, keepdims=True)

    weights = np.zeros((len(SHAPE_NAMES), 8, n, 3))
    fixed = np.zeros((len(SHAPE_NAMES), 8, n, 3))
    lit_point = point + 1e-4 * np.where(is_floor[:, None], np.array([0, 1.0, 0]), wall_normal)
    to_light = np.broadcast_to(_TO_LIGHT, point.shape)
    for shape in range(len(SHAPE_NAMES)):
        for k, scale in enumerate(np.linspace(0.75, 1.25, 8)):
            t_obj, normal = _hit_object(shape, scale, origin, direction)
            is_obj = t_obj < t_background
            # Shadow: background points that cannot see the light past the object.
            t_block, _ = _hit_object(shape, scale, lit_point, to_light)
            shadow = np.where(np.isfinite(t_block), 0.52, 1.0)
            lambert = np.clip(np.einsum("ij,j->i", normal, _TO_LIGHT), 0, 1)
            obj_light = 0.3 + 0.7 * lambert
            specular = 0.45 * np.clip(np.einsum("ij,ij->i", normal, half_vector), 0, 1) ** 40
            w = weights[shape, k]
            w[:, 0] = np.where(is_floor & ~is_obj, floor_light * shadow, 0)
            w[:, 1] = np.where(is_wall & ~is_obj, wall_light * shadow, 0)
            w[:, 2] = np.where(is_obj, obj_light, 0)
            fixed[shape, k] = np.where((is_sky & ~is_obj)[:, None], sky, 0)
            fixed[shape, k] += np.where(is_obj, specular, 0)[:, None]
    return weights, fixed


def _box_downsample(maps: np.ndarray, rays_per_side: int, size: int) -> np.ndarray:
    factor = rays_per_side // size
    lead = maps.shape[:-3]
    grid = maps.reshape(*lead, size, factor, size, factor, maps.shape[-1])
    return grid.mean(axis=(-4, -2)).reshape(*lead, size * size, maps.shape[-1])


@lru_cache(maxsize=4)
def shading_templates(image_size: int, seed: int) -> np.ndarray:
    """Render the 480 geometry templates of ``toyshapes`` (cached per process).

    Returns
    -------
    ndarray of shape (480, image_size**2, 6), float32, read-only
        Row ``np.ravel_multi_index((scale, shape, orientation), (8, 4, 15))``; per pixel
        the floor, wall and object light (columns 0-2, each multiplies that region's hue
        colour) and the RGB light that does not depend on the hues (columns 3-5: sky,
        specular highlights).  An image is ``template @ [floor_rgb; wall_rgb;
        object_rgb; identity(3)]``.
    """
    rays = max(_RAYS_PER_SIDE, image_size)
    if rays % image_size:
        raise ValueError(f"toyshapes: image_size must divide {rays}: received {image_size}")
    orientations = shapes3d_factor_values()[5]
    templates = np.empty((8, 4, 15, image_size * image_size, 6), dtype=np.float32)
    for o, azimuth in enumerate(orientations):
        weights, fixed = _render_orientation(float(azimuth), seed, rays)
        both = np.concatenate([weights, fixed], axis=-1)       # (shape, scale, rays, 6)
        both = _box_downsample(both.reshape(4, 8, rays, rays, 6), rays, image_size)
        templates[:, :, o] = both.transpose(1, 0, 2, 3)         # -> (scale, shape, ...)
    templates = templates.reshape(480, image_size * image_size, 6)
    templates.setflags(write=False)
    return templates


class ToyShapes(FactorDataset):
    """A Shapes3D-like scene rendered procedurally: no download, any sample on demand.

    Parameters
    ----------
    image_size : int, default 64
        64 or 32 (any divisor of 128 works).
    seed : int, default 0
        Selects the faint fixed texture of floor and walls.  The map from factors to
        images is otherwise fixed; the same seed gives the same bytes.

    Notes
    -----
    Factors (Shapes3D's structure and label values): floor_hue, wall_hue, object_hue
    (10 hues each, 0.0 .. 0.9), scale (8 values 0.75 .. 1.25), shape (cube, cylinder,
    sphere, capsule), orientation (15 camera azimuths -30 .. 30 degrees).
    The first use at a given size ray-casts 480 templates (2-3 s here); images are
    then computed on demand from them, so nothing is cached on disk.
    """

    def __init__(self, *, image_size: int = 64, seed: int = 0):
        self.name = "toyshapes"
        self.factor_names = SHAPES3D_FACTOR_NAMES
        self.factor_sizes = SHAPES3D_FACTOR_SIZES
        self.factor_values = shapes3d_factor_values()
        self.image_size = int(image_size)
        self.seed = int(seed)
        if self.image_size < 8 or _RAYS_PER_SIDE % self.image_size:
            raise ValueError(f"toyshapes: image_size must be a divisor of {_RAYS_PER_SIDE} "
                             f"of at least 8 (64 or 32): received {image_size}")
        hues = self.factor_values[0]
        self._hue_rgb = hues_to_rgb(hues).astype(np.float32)  # (10, 3)

    def _images_uint8_at(self, indices: np.ndarray) -> np.ndarray:
        templates = shading_templates(self.image_size, self.seed)
        factors = self.factors(indices)
        geometry = np.ravel_multi_index((factors[:, 3], factors[:, 4], factors[:, 5]), (8, 4, 15))
        colours = np.empty((len(indices), 6, 3), dtype=np.float32)
        for region in range(3):                           # floor, wall, object hue
            colours[:, region] = self._hue_rgb[factors[:, region]]
        colours[:, 3:] = np.eye(3, dtype=np.float32)      # the hue-free light passes as is
        size = self.image_size
        out = np.empty((len(indices), size * size, 3), dtype=np.uint8)
        # Batches keep the float32 intermediates around 100 MB.
        batch = max(1, (1 << 22) // (size * size))
        for start in range(0, len(indices), batch):
            stop = start + batch
            image = np.matmul(templates[geometry[start:stop]], colours[start:stop])
            np.clip(image, 0.0, 1.0, out=image)
            image *= 255.0
            image += 0.5                                  # round, then truncate to uint8
            out[start:stop] = image
        return out.reshape(-1, size, size, 3)
