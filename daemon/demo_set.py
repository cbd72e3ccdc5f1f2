"""Render InstaRecon3D's own demo photo set, so the project never ships third-party photos.

The scene is a few boxes and a sphere standing on a ground disk inside a closed
cylindrical room, every surface covered in procedural, non-repeating texture, so that
every pixel has something for SIFT to match and no two places look alike. Cameras sit on
a ring around the objects, all aimed at them, with one fixed pinhole focal length that is
also written to EXIF, so real structure-from-motion can register every view and the
returned ground-truth cameras can be compared with what it recovers.

Rendering is vectorised numpy ray casting: textures are painted once per set (Pillow
draws the sharp shapes), then each view is one batch of rays, supersampled and box-filtered
down so that edges are anti-aliased the way a real lens would blur them.

Usage: ``python -m daemon.demo_set PATH [--views N] [--size 800x600] [--seed S] [--no-ready]``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np
from PIL import Image, ImageDraw

# 35 mm-equivalent focal length of every view. The simulated sensor is 36 mm wide, so the
# EXIF focal length in mm equals the 35 mm equivalent and f_px = width * 32 / 36.
FOCAL_LENGTH_35MM = 32
SENSOR_WIDTH_MM = 36.0
JPEG_QUALITY = 92
READY_MARKER = "READY"

# Scene layout in world units, z up. Every camera aims at SCENE_TARGET, the middle of the
# object group; the tallest object's top is at OBJECT_TOP.
SCENE_TARGET = (0.0, 0.0, 0.6)
OBJECT_TOP = (0.75, 0.7, 1.4)
CAMERA_RING_RADIUS = 4.0
CAMERA_HEIGHT = 1.9
CAMERA_HEIGHT_SWING = 0.35  # heights vary around the ring so the centres are not coplanar
ROOM_RADIUS = 7.0
ROOM_HEIGHT = 4.5

# Lambertian shading with a light from above and to one side; the ambient term keeps the
# walls (lit at grazing angles) bright enough to show their texture.
LIGHT_DIRECTION = (0.4, 0.3, 1.0)
AMBIENT = 0.45
DIFFUSE = 0.6
SUPERSAMPLE = 2  # rays per pixel along each axis
ROOM_SATURATION = 0.35  # a muted room, so the full-colour objects stand out
# Texture resolution tracks image resolution: texels per world unit equal the pixels per
# unit (after supersampling) seen at this distance, so small test renders stay fast.
TEXTURE_DISTANCE = {"object": 4.5, "floor": 9.0, "wall": 12.0, "ceiling": 40.0}

_EXIF_IFD = 0x8769
_TAG_MAKE = 0x010F
_TAG_MODEL = 0x0110
_TAG_FOCAL_LENGTH = 0x920A
_TAG_FOCAL_LENGTH_35MM = 0xA405


@dataclass(frozen=True)
class SyntheticView:
    """Ground truth for one rendered photo.

    Pixel coordinates follow COLMAP's convention: pixel (0, 0) covers [0, 1] x [0, 1],
    so the principal point (width / 2, height / 2) is the image centre.
    """

    file: str  # file name inside the folder
    width: int
    height: int
    K: tuple[tuple[float, ...], ...]  # 3x3 intrinsics in pixels
    R_world_to_camera: tuple[tuple[float, ...], ...]  # 3x3, camera x right, y down, z forward
    t_world_to_camera: tuple[float, float, float]
    center: tuple[float, float, float]  # camera centre in world units


# --------------------------------------------------------------------------- textures


class Texture:
    """An RGB image laid over a surface: (u, v) in world units map to texels."""

    def __init__(self, image: np.ndarray, texels_per_unit: float) -> None:
        self.rows, self.cols, _ = image.shape
        self.texels_per_unit = np.float32(texels_per_unit)
        # One uint32 per texel, so a bilinear lookup gathers 4 words, not 12 bytes.
        rgba = np.zeros((self.rows, self.cols, 4), np.uint8)
        rgba[:, :, :3] = image
        self.packed = rgba.view(np.uint32).reshape(-1)

    def sample(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Bilinear lookup, clamped at the borders; returns (n, 3) float32 albedo in [0, 1]."""
        x = np.clip(u * self.texels_per_unit - np.float32(0.5), 0, self.cols - 1.001)
        y = np.clip(v * self.texels_per_unit - np.float32(0.5), 0, self.rows - 1.001)
        x_floor, y_floor = np.floor(x), np.floor(y)
        fx, fy = x - x_floor, y - y_floor
        corner = y_floor.astype(np.int32) * self.cols + x_floor.astype(np.int32)

        def texels(index: np.ndarray) -> np.ndarray:
            return self.packed.take(index).view(np.uint8).reshape(-1, 4)[:, :3]

        albedo = texels(corner) * ((1 - fx) * (1 - fy))[:, None]
        albedo += texels(corner + 1) * (fx * (1 - fy))[:, None]
        albedo += texels(corner + self.cols) * ((1 - fx) * fy)[:, None]
        albedo += texels(corner + self.cols + 1) * (fx * fy)[:, None]
        albedo *= np.float32(1 / 255)
        return albedo


def _noise(rng: np.random.Generator, width_units: float, height_units: float,
           texels_per_unit: float, cell: float, channels: int) -> np.ndarray:
    """Smooth value noise in [0, 1] with features about `cell` world units across.

    The random lattice depends only on the world-unit size, never on the texel
    resolution, so a seed paints the same pattern at every image size.
    """
    cols = math.ceil(width_units * texels_per_unit)
    rows = math.ceil(height_units * texels_per_unit)
    lattice = rng.random((math.ceil(height_units / cell) + 2, math.ceil(width_units / cell) + 2,
                          channels), dtype=np.float32)
    box = (0.0, 0.0, width_units / cell, height_units / cell)
    planes = [np.asarray(Image.fromarray(np.ascontiguousarray(lattice[:, :, c]))
                         .resize((cols, rows), Image.Resampling.BICUBIC, box=box))
              for c in range(channels)]
    return np.stack(planes, axis=-1)


def _paint_texture(rng: np.random.Generator, width_units: float, height_units: float,
                   texels_per_unit: float, shapes_per_unit2: float, saturation: float) -> Texture:
    """Paint a non-repeating texture: tinted multi-scale brightness noise under many
    random, partly transparent, sharp-edged shapes.

    SIFT sees only brightness, so both noise and shapes vary in brightness, not just in
    hue; shape edges give corners at every scale, and the noise showing through keeps
    even the inside of a shape from being blank. `saturation` (0 grey, 1 full colour)
    lets the objects stand out from a more muted room.
    """
    texels_per_unit = max(texels_per_unit, 4.0)

    def noise(cell: float, channels: int = 1) -> np.ndarray:
        return _noise(rng, width_units, height_units, texels_per_unit, cell, channels)

    brightness = noise(1.2) * 0.4 + noise(0.35) * 0.3 + noise(0.1) * 0.2 + noise(0.03) * 0.25
    brightness -= brightness.mean()
    brightness *= 0.25 / max(float(brightness.std()), 1e-6)
    brightness += 0.5
    tint = 1 - saturation * 0.45 * (1 - noise(1.5, channels=3))
    base = np.empty(brightness.shape[:2] + (4,), np.uint8)
    base[:, :, :3] = np.clip(brightness * tint, 0, 1) * 255
    base[:, :, 3] = 255

    shapes = Image.new("RGBA", (base.shape[1], base.shape[0]), (0, 0, 0, 0))
    draw = ImageDraw.Draw(shapes)
    # A few large shapes first, for structure that survives small renders, then many small ones.
    for size_range, per_unit2 in (((0.25, 0.7), 3.0), ((0.025, 0.3), shapes_per_unit2)):
        _draw_shapes(draw, rng, width_units, height_units, texels_per_unit,
                     int(width_units * height_units * per_unit2), size_range, saturation)
    painted = Image.alpha_composite(Image.fromarray(base), shapes).convert("RGB")
    return Texture(np.asarray(painted), texels_per_unit)


def _draw_shapes(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width_units: float,
                 height_units: float, texels_per_unit: float, count: int,
                 size_range: tuple[float, float], saturation: float) -> None:
    """Scatter ellipses, rotated rectangles, triangles and strokes of random size and colour.

    All random numbers are drawn up front, in world units, so a seed gives the same
    shapes at any texture resolution.
    """
    kinds = rng.integers(0, 4, count)
    centres = rng.random((count, 2)) * (width_units, height_units) * texels_per_unit
    sizes = np.exp(rng.uniform(*np.log(size_range), count)) * texels_per_unit
    shapes = rng.uniform(-1, 1, (count, 3, 2))
    angles = rng.uniform(0, math.pi, count)
    colours = rng.integers(0, 256, (count, 4))
    grey = colours[:, :3].mean(axis=1, keepdims=True)
    colours[:, :3] = grey + saturation * (colours[:, :3] - grey)
    colours[:, 3] = rng.integers(120, 200, count)  # opacity: the noise below still shows
    # A third of the shapes are near-black or near-white, for strong brightness contrast.
    extreme = rng.random(count)
    colours[extreme < 0.16, :3] //= 5
    colours[(extreme >= 0.16) & (extreme < 0.33), :3] |= 0xE0

    for kind, (cx, cy), size, shape, angle, colour in zip(kinds, centres, sizes, shapes, angles,
                                                           colours.tolist()):
        fill = tuple(colour)
        if kind == 0:
            rx, ry = size * (0.5 + 0.5 * np.abs(shape[0]))
            draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=fill)
        elif kind == 1:
            half_u, half_v = size * (0.3 + 0.7 * np.abs(shape[0]))
            c, s = math.cos(angle), math.sin(angle)
            draw.polygon([(cx + a * half_u * c - b * half_v * s, cy + a * half_u * s + b * half_v * c)
                          for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1))], fill=fill)
        elif kind == 2:
            draw.polygon([(cx + dx * size, cy + dy * size) for dx, dy in shape], fill=fill)
        else:
            end = (cx + 1.5 * size * math.cos(angle), cy + 1.5 * size * math.sin(angle))
            draw.line([(cx, cy), end], fill=fill, width=max(1, round(0.15 * size)))


# --------------------------------------------------------------------------- geometry


class Room:
    """Floor, wall (inside of a vertical cylinder) and ceiling: every ray ends on one of
    them, so the background is textured everywhere and no pixel is empty sky."""

    def __init__(self, radius: float, height: float, floor: Texture, wall: Texture,
                 ceiling: Texture) -> None:
        self.radius = radius
        self.height = height
        self.floor = floor
        self.wall = wall
        self.ceiling = ceiling

    def intersect(self, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        """Distance along every unit ray to the room's surface (the camera is inside)."""
        dx, dy, dz = dirs.T
        with np.errstate(divide="ignore", invalid="ignore"):
            # Down to the floor or up to the ceiling; a level ray (dz of +-0) gets +inf.
            to_plane = np.where(dz < 0, origin[2], self.height - origin[2]) / np.abs(dz)
            a = dx * dx + dy * dy
            b = dx * origin[0] + dy * origin[1]
            c = origin[0] ** 2 + origin[1] ** 2 - self.radius ** 2  # negative inside
            to_wall = (np.sqrt(b * b - a * c) - b) / a
        return np.fmin(to_plane, to_wall)

    def shade(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        normals = np.zeros_like(points)
        albedo = np.empty_like(points)
        z = points[:, 2]
        on_floor = z < 1e-3
        on_ceiling = z > self.height - 1e-3
        on_wall = ~(on_floor | on_ceiling)
        for part, texture, up in ((on_floor, self.floor, 1), (on_ceiling, self.ceiling, -1)):
            normals[part, 2] = up
            albedo[part] = texture.sample(points[part, 0] + self.radius,
                                          points[part, 1] + self.radius)
        wall = points[on_wall]
        normals[on_wall, :2] = -wall[:, :2] / self.radius
        angle = np.arctan2(wall[:, 1], wall[:, 0]) + np.float32(math.pi)
        albedo[on_wall] = self.wall.sample(angle * self.radius, wall[:, 2])
        return normals, albedo


class SceneObject(Protocol):
    """Something standing in the room, tested only against rays near it."""

    def intersect(self, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(indices of the rays that hit, distance along each of them)."""

    def shade(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(unit normals, albedo in [0, 1]) at points on the surface."""


def _rays_near(origin: np.ndarray, dirs: np.ndarray, centre: np.ndarray,
               radius: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Indices of the unit rays that pass within `radius` of `centre` (so only those need
    an exact test), with b = d.(o - c) and c = |o - c|^2 - r^2 of the ray-sphere equation."""
    offset = origin - centre
    b = dirs @ offset
    c = float(offset @ offset) - radius ** 2
    rays = np.flatnonzero(b * b > c)
    return rays, b[rays], c


class Sphere:
    def __init__(self, centre: Sequence[float], radius: float, texture: Texture) -> None:
        self.centre = np.asarray(centre, np.float32)
        self.radius = radius
        self.texture = texture

    def intersect(self, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rays, b, c = _rays_near(origin, dirs, self.centre, self.radius)
        t = -b - np.sqrt(b * b - c)
        return rays[t > 0], t[t > 0]

    def shade(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        normals = (points - self.centre) / self.radius
        longitude = np.arctan2(normals[:, 1], normals[:, 0]) + np.float32(math.pi)
        colatitude = np.arccos(np.clip(normals[:, 2], -1, 1))
        return normals, self.texture.sample(longitude * self.radius, colatitude * self.radius)


class Box:
    """A box standing on the floor, turned by `yaw_degrees` about the vertical axis.

    Its texture is an atlas with one region per face, so no two faces look alike.
    """

    def __init__(self, centre_xy: Sequence[float], size: Sequence[float], yaw_degrees: float,
                 paint: Callable[[float, float], Texture]) -> None:
        self.half = np.asarray(size, np.float32) / 2
        self.centre = np.array([centre_xy[0], centre_xy[1], self.half[2]], np.float32)
        yaw = math.radians(yaw_degrees)
        self.rotation = np.array([[math.cos(yaw), -math.sin(yaw), 0],
                                  [math.sin(yaw), math.cos(yaw), 0],
                                  [0, 0, 1]], np.float32)  # box frame -> world
        # Faces across the normal's axis a are parametrised by axes (a+1, a+2): the atlas
        # has one column per axis (negative face above, positive below).
        self.u_axis = np.array([1, 2, 0])
        self.v_axis = np.array([2, 0, 1])
        widths = 2 * self.half[self.u_axis]
        self.column_start = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.float32)
        self.row_height = float(2 * self.half.max())
        self.texture = paint(float(widths.sum()), 2 * self.row_height)

    def intersect(self, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rays, _, _ = _rays_near(origin, dirs, self.centre, float(np.linalg.norm(self.half)))
        local_origin = (origin - self.centre) @ self.rotation
        local_dirs = dirs[rays] @ self.rotation
        with np.errstate(divide="ignore", invalid="ignore"):
            inverse = 1 / local_dirs
            t1 = (-self.half - local_origin) * inverse
            t2 = (self.half - local_origin) * inverse
        near = np.minimum(t1, t2).max(axis=1)
        far = np.maximum(t1, t2).min(axis=1)
        hit = (near <= far) & (near > 0)
        return rays[hit], near[hit]

    def shade(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        local = (points - self.centre) @ self.rotation
        rows = np.arange(len(points))
        axis = np.argmax(np.abs(local) / self.half, axis=1)
        positive = local[rows, axis] > 0
        local_normals = np.zeros_like(local)
        local_normals[rows, axis] = np.where(positive, 1, -1)
        u_axis, v_axis = self.u_axis[axis], self.v_axis[axis]
        u = local[rows, u_axis] + self.half[u_axis] + self.column_start[axis]
        v = local[rows, v_axis] + self.half[v_axis] + positive * np.float32(self.row_height)
        return local_normals @ self.rotation.T, self.texture.sample(u, v)


@dataclass(frozen=True)
class Scene:
    room: Room
    objects: tuple[SceneObject, ...]


def build_scene(rng: np.random.Generator, pixels_per_unit_at_1: float) -> Scene:
    """Lay out the room and objects and paint their textures from `rng`.

    `pixels_per_unit_at_1` is the supersampled focal length in pixels: a world unit one
    unit away spans that many pixels, which sets how fine each texture needs to be.
    """
    def painter(kind: str, shapes_per_unit2: float,
                saturation: float = ROOM_SATURATION) -> Callable[[float, float], Texture]:
        density = pixels_per_unit_at_1 / TEXTURE_DISTANCE[kind]
        return lambda width, height: _paint_texture(rng, width, height, density,
                                                    shapes_per_unit2, saturation)

    diameter = 2 * ROOM_RADIUS
    room = Room(ROOM_RADIUS, ROOM_HEIGHT,
                floor=painter("floor", 40)(diameter, diameter),
                wall=painter("wall", 30)(2 * math.pi * ROOM_RADIUS, ROOM_HEIGHT),
                ceiling=painter("ceiling", 10)(diameter, diameter))
    paint_object = painter("object", 160, saturation=1.0)
    objects = (
        Box((0.25, -0.25), (0.9, 0.65, 1.0), 20, paint_object),
        Box((-0.7, 0.45), (0.55, 0.5, 0.55), -35, paint_object),
        Box(OBJECT_TOP[:2], (0.3, 0.35, OBJECT_TOP[2]), 10, paint_object),
        Box((-0.1, 0.95), (0.4, 0.3, 0.3), 55, paint_object),
        Sphere((-0.55, -0.65, 0.45), 0.45, paint_object(2 * math.pi * 0.45, math.pi * 0.45)),
    )
    return Scene(room, objects)


# --------------------------------------------------------------------------- cameras


def ring_cameras(views: int, width: int, height: int,
                 spacing_degrees: float | None = None) -> list[SyntheticView]:
    """Cameras on a ring around the objects, `spacing_degrees` apart (default: evenly
    around the whole ring), all aimed at SCENE_TARGET."""
    spacing = math.radians(360 / views if spacing_degrees is None else spacing_degrees)
    focal = width * FOCAL_LENGTH_35MM / SENSOR_WIDTH_MM
    K = ((focal, 0.0, width / 2), (0.0, focal, height / 2), (0.0, 0.0, 1.0))
    target = np.array(SCENE_TARGET)
    up = np.array([0.0, 0.0, 1.0])
    cameras = []
    for index in range(views):
        angle = spacing * index
        centre = np.array([CAMERA_RING_RADIUS * math.cos(angle),
                           CAMERA_RING_RADIUS * math.sin(angle),
                           CAMERA_HEIGHT + CAMERA_HEIGHT_SWING * math.sin(2 * angle)])
        forward = (target - centre) / np.linalg.norm(target - centre)
        right = np.cross(forward, up)
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        rotation = np.stack([right, down, forward])
        cameras.append(SyntheticView(
            file=f"view_{index:03d}.jpg", width=width, height=height, K=K,
            R_world_to_camera=tuple(tuple(float(x) for x in row) for row in rotation),
            t_world_to_camera=tuple(float(x) for x in -rotation @ centre),
            center=tuple(float(x) for x in centre),
        ))
    return cameras


def render(scene: Scene, view: SyntheticView, supersample: int = SUPERSAMPLE) -> np.ndarray:
    """Ray-cast one view; returns (height, width, 3) uint8."""
    rows, cols = view.height * supersample, view.width * supersample
    (fx, _, cx), (_, fy, cy), _ = view.K
    # Sample positions in output-pixel coordinates, centred in each sub-pixel, as
    # camera-frame directions (x, y, 1) scaled to unit length.
    xs = ((np.arange(cols, dtype=np.float32) + 0.5) / supersample - cx) / fx
    ys = ((np.arange(rows, dtype=np.float32) + 0.5) / supersample - cy) / fy
    scale = 1 / np.sqrt(xs[None, :] ** 2 + ys[:, None] ** 2 + 1)
    right, down, forward = np.asarray(view.R_world_to_camera, np.float32)
    dirs = ((xs[None, :, None] * right + ys[:, None, None] * down + forward)
            * scale[:, :, None]).reshape(-1, 3)
    origin = np.asarray(view.center, np.float32)

    distance = scene.room.intersect(origin, dirs)
    owner = np.zeros(len(dirs), np.int8)  # 0: the room, k: scene.objects[k - 1]
    for index, thing in enumerate(scene.objects, start=1):
        rays, t = thing.intersect(origin, dirs)
        closer = t < distance[rays]
        distance[rays[closer]] = t[closer]
        owner[rays[closer]] = index

    light = np.asarray(LIGHT_DIRECTION, np.float32) / np.linalg.norm(LIGHT_DIRECTION)
    colour = np.empty((len(dirs), 3), np.float32)
    for index, thing in enumerate((scene.room,) + scene.objects):
        rays = np.flatnonzero(owner == index)
        points = origin + distance[rays, None] * dirs[rays]
        normals, albedo = thing.shade(points)
        colour[rays] = albedo * (AMBIENT + DIFFUSE * np.maximum(normals @ light, 0))[:, None]

    blocks = colour.reshape(view.height, supersample, view.width, supersample, 3)
    pixels = sum(blocks[:, i, :, j] for i in range(supersample) for j in range(supersample))
    return (np.clip(pixels / supersample ** 2, 0, 1) * 255 + 0.5).astype(np.uint8)


# --------------------------------------------------------------------------- output


def _exif(view: SyntheticView) -> Image.Exif:
    """Make, model and the focal length that COLMAP uses as its initial intrinsics."""
    exif = Image.Exif()
    exif[_TAG_MAKE] = "InstaRecon3D"
    exif[_TAG_MODEL] = "Synthetic camera"
    focal_mm = view.K[0][0] * SENSOR_WIDTH_MM / view.width
    details = exif.get_ifd(_EXIF_IFD)
    details[_TAG_FOCAL_LENGTH] = focal_mm
    details[_TAG_FOCAL_LENGTH_35MM] = round(focal_mm)
    return exif


def write_demo_set(folder: Path, *, views: int = 24, width: int = 800, height: int = 600,
                   seed: int = 0, ready_marker: bool = True, spacing_degrees: float | None = None,
                   supersample: int = SUPERSAMPLE) -> list[SyntheticView]:
    """Render `views` photos of the synthetic scene into `folder` and return their cameras.

    Cameras go all around the objects unless `spacing_degrees` is given: then they cover
    an arc of views x spacing. Structure-from-motion needs adjacent views at most about
    15 degrees apart at small sizes (see bench/synthetic_sfm_check.py), so small, few-view
    test sets should pass e.g. spacing_degrees=15 rather than spread 8 views over 360.

    Rewriting a folder first removes READY and the view_*.jpg of an earlier run, so the
    set never mixes photos of two runs. Each photo is written under a temporary name and
    renamed, and READY (if wanted) comes last, so a watching daemon never takes a
    half-written set as complete.
    """
    if views < 1 or width < 16 or height < 16:
        raise ValueError(f"need at least 1 view of at least 16x16 pixels, got {views} of {width}x{height}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / READY_MARKER
    marker.unlink(missing_ok=True)
    for stale in folder.glob("view_*.jpg"):
        stale.unlink()

    rng = np.random.default_rng(seed)
    cameras = ring_cameras(views, width, height, spacing_degrees)
    scene = build_scene(rng, cameras[0].K[0][0] * supersample)
    for view in cameras:
        pixels = render(scene, view, supersample)
        partial = folder / (view.file + ".part")
        Image.fromarray(pixels).save(partial, format="JPEG", quality=JPEG_QUALITY, exif=_exif(view))
        os.replace(partial, folder / view.file)
    if ready_marker:
        marker.touch()
    return cameras


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return width, height


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m daemon.demo_set",
                                     description="Render the synthetic demo photo set.")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--views", type=int, default=24)
    parser.add_argument("--size", type=_size, default=(800, 600), metavar="WIDTHxHEIGHT")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spacing", type=float, metavar="DEGREES",
                        help="degrees between adjacent views (default: all around)")
    parser.add_argument("--no-ready", action="store_true", help="do not write the READY marker")
    args = parser.parse_args(argv)
    width, height = args.size
    started = time.monotonic()
    try:
        write_demo_set(args.folder, views=args.views, width=width, height=height,
                       seed=args.seed, ready_marker=not args.no_ready,
                       spacing_degrees=args.spacing)
    except ValueError as error:
        parser.error(str(error))
    ready = "" if args.no_ready else " and READY"
    print(f"wrote {args.views} views ({width}x{height}, seed {args.seed}){ready} to "
          f"{args.folder} in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
