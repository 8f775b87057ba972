"""Procedural backgrounds for synthetic hand frames (and real photos when a package ships some).

Every generator returns a BGR uint8 image (H, W, 3). Structure is drawn at a reduced resolution
(at most `_WORK_SIDE` pixels) and upsampled, which is fast and mimics a webcam's soft, out-of-focus
background; fine grain is added at full resolution. Kinds: gradients, multi-octave value noise
(walls, fabric), indoor rooms (wall, floor, furniture, window, shelves), clutter of shapes, regular
patterns (stripes, checks, bricks, wood), a person (head and torso) behind the hand, and real photos.

Real photos: scikit-learn's `load_sample_images` (two photos) when scikit-learn is installed, plus any
folder of images passed to `BackgroundSampler(photo_dir=...)`.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import cv2
import numpy as np

_WORK_SIDE = 192
BACKGROUND_KINDS: tuple[str, ...] = ("gradient", "noise", "room", "clutter", "pattern")
_PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def _work_size(width: int, height: int, side: int = _WORK_SIDE) -> tuple[int, int]:
    scale = min(1.0, side / max(width, height))
    return max(int(round(width * scale)), 4), max(int(round(height * scale)), 4)


def _random_color(rng: np.random.Generator, saturation: float = 0.5, value: tuple[float, float] = (0.15, 0.95)) -> np.ndarray:
    """A random colour (3,) float32 BGR in [0, 1], drawn in HSV."""
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(0, saturation) * 255, rng.uniform(*value) * 255]]], np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32) / 255.0


def value_noise(rng: np.random.Generator, width: int, height: int, octaves: int = 4, base_cells: int = 3) -> np.ndarray:
    """Multi-octave smooth noise (H, W) float32, roughly in [-1, 1]."""
    out = np.zeros((height, width), np.float32)
    amp, total = 1.0, 0.0
    for octave in range(octaves):
        cells = base_cells * (2**octave)
        grid = rng.uniform(-1.0, 1.0, size=(max(cells * height // max(width, height), 1) + 1, cells + 1)).astype(np.float32)
        out += amp * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
    return out / total


def _gradient(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    c0, c1 = _random_color(rng), _random_color(rng)
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (xs / width - 0.5) * np.cos(angle) + (ys / height - 0.5) * np.sin(angle)
    if rng.random() < 0.4:
        t = np.sqrt((xs / width - rng.uniform(0, 1)) ** 2 + (ys / height - rng.uniform(0, 1)) ** 2)
    t = np.clip(t - t.min(), 0, None)
    t /= max(float(t.max()), 1e-6)
    return c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]


def _noise_texture(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    c0, c1 = _random_color(rng), _random_color(rng)
    n = value_noise(rng, width, height, octaves=int(rng.integers(2, 6)), base_cells=int(rng.integers(2, 8)))
    t = np.clip(0.5 + 0.8 * n, 0, 1)[..., None]
    return c0[None, None] * (1 - t) + c1[None, None] * t


def _pattern(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    c0, c1 = _random_color(rng), _random_color(rng)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    period = rng.uniform(6, 40) * max(width, height) / _WORK_SIDE
    angle = rng.uniform(0, np.pi)
    u = xs * np.cos(angle) + ys * np.sin(angle)
    v = -xs * np.sin(angle) + ys * np.cos(angle)
    kind = rng.integers(0, 4)
    if kind == 0:
        t = (np.sin(2 * np.pi * u / period) > 0).astype(np.float32)
    elif kind == 1:
        t = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    elif kind == 2:
        row = np.floor(v / (0.5 * period))
        t = ((np.mod(u + 0.5 * period * (row % 2), period) < 0.08 * period) | (np.mod(v, 0.5 * period) < 0.08 * period)).astype(np.float32)
    else:
        warp = value_noise(rng, width, height, octaves=3, base_cells=2) * period * 2
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (u + warp) / (0.3 * period))
    return c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]


def _rect(img: np.ndarray, rng: np.random.Generator, x0: float, y0: float, x1: float, y1: float, color: np.ndarray) -> None:
    h, w = img.shape[:2]
    p0 = (int(x0 * w), int(y0 * h))
    p1 = (int(x1 * w), int(y1 * h))
    cv2.rectangle(img, p0, p1, tuple(float(c) for c in color), -1, cv2.LINE_AA)
    if rng.random() < 0.5:
        edge = np.clip(color * 0.6, 0, 1)
        cv2.rectangle(img, p0, p1, tuple(float(c) for c in edge), max(1, w // 150), cv2.LINE_AA)


def _room(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    wall = _random_color(rng, saturation=0.3, value=(0.45, 0.95))
    img = np.empty((height, width, 3), np.float32)
    img[:] = wall
    shade = value_noise(rng, width, height, octaves=2, base_cells=2)
    img *= (1.0 + 0.15 * shade)[..., None]
    horizon = rng.uniform(0.55, 1.2)
    if horizon < 1.0:
        floor = _random_color(rng, saturation=0.4, value=(0.2, 0.7))
        img[int(horizon * height):] = floor
    for _ in range(int(rng.integers(0, 3))):
        x0, y0 = rng.uniform(-0.1, 0.9), rng.uniform(-0.1, 0.7)
        _rect(img, rng, x0, y0, x0 + rng.uniform(0.1, 0.45), y0 + rng.uniform(0.15, 0.6), _random_color(rng, 0.45))
    if rng.random() < 0.4:  # bright window
        x0, y0 = rng.uniform(-0.1, 0.8), rng.uniform(-0.1, 0.4)
        sky = np.clip(_random_color(rng, 0.3, (0.8, 1.0)) + 0.2, 0, 1)
        _rect(img, rng, x0, y0, x0 + rng.uniform(0.2, 0.5), y0 + rng.uniform(0.2, 0.5), sky)
    if rng.random() < 0.5:  # shelf with items
        y = rng.uniform(0.1, 0.7)
        _rect(img, rng, -0.1, y, 1.1, y + 0.025, _random_color(rng, 0.4, (0.1, 0.6)))
        x = rng.uniform(0.0, 0.2)
        while x < 1.0:
            w_item = rng.uniform(0.015, 0.08)
            _rect(img, rng, x, y - rng.uniform(0.05, 0.22), x + w_item, y, _random_color(rng, 0.6))
            x += w_item + rng.uniform(0.0, 0.1)
    return img


def _clutter(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    img = _noise_texture(rng, width, height) if rng.random() < 0.5 else _gradient(rng, width, height)
    img = np.ascontiguousarray(img, dtype=np.float32)
    scale = max(width, height)
    for _ in range(int(rng.integers(5, 30))):
        color = tuple(float(c) for c in _random_color(rng, 0.6, (0.05, 1.0)))
        kind = rng.integers(0, 4)
        cx, cy = int(rng.uniform(0, width)), int(rng.uniform(0, height))
        size = int(rng.uniform(0.02, 0.3) * scale)
        if kind == 0:
            cv2.ellipse(img, (cx, cy), (size, int(size * rng.uniform(0.3, 1.0))), rng.uniform(0, 180), 0, 360, color, -1, cv2.LINE_AA)
        elif kind == 1:
            pts = np.array([[cx + rng.normal(0, size), cy + rng.normal(0, size)] for _ in range(int(rng.integers(3, 7)))], np.int32)
            cv2.fillPoly(img, [cv2.convexHull(pts)], color, cv2.LINE_AA)
        elif kind == 2:
            cv2.line(img, (cx, cy), (int(cx + rng.normal(0, 2 * size)), int(cy + rng.normal(0, 2 * size))), color, max(1, size // 8), cv2.LINE_AA)
        else:
            cv2.rectangle(img, (cx, cy), (cx + size, cy + int(size * rng.uniform(0.3, 1.5))), color, -1, cv2.LINE_AA)
    return img


def _person(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Draw a blurred head-and-torso silhouette (skin-coloured face, hair, shirt) on a background."""
    h, w = img.shape[:2]
    cx = rng.uniform(0.2, 0.8) * w
    head_r = rng.uniform(0.1, 0.22) * h
    cy = rng.uniform(0.15, 0.5) * h
    shirt = tuple(float(c) for c in _random_color(rng, 0.7, (0.05, 0.9)))
    cv2.ellipse(img, (int(cx), int(cy + 3.2 * head_r)), (int(2.6 * head_r), int(2.2 * head_r)), 0, 180, 360, shirt, -1, cv2.LINE_AA)
    cv2.rectangle(img, (int(cx - 2.6 * head_r), int(cy + 3.2 * head_r)), (int(cx + 2.6 * head_r), h), shirt, -1)
    tone = np.array([0.75, 0.55, 0.4]) * rng.uniform(0.3, 1.15)
    skin = tuple(float(c) for c in np.clip(tone[::-1], 0, 1))
    cv2.rectangle(img, (int(cx - 0.4 * head_r), int(cy + 0.6 * head_r)), (int(cx + 0.4 * head_r), int(cy + 1.6 * head_r)), skin, -1)
    cv2.ellipse(img, (int(cx), int(cy)), (int(0.8 * head_r), int(head_r)), 0, 0, 360, skin, -1, cv2.LINE_AA)
    hair = tuple(float(c) for c in np.clip(np.array([0.1, 0.12, 0.15]) * rng.uniform(0.3, 4.0), 0, 1))
    cv2.ellipse(img, (int(cx), int(cy - 0.25 * head_r)), (int(0.85 * head_r), int(0.85 * head_r)), 0, 180, 360, hair, -1, cv2.LINE_AA)
    return img


def _load_photos(photo_dir: Path | None) -> list[np.ndarray]:
    photos: list[np.ndarray] = []
    if importlib.util.find_spec("sklearn") is not None:
        from sklearn.datasets import load_sample_images

        for rgb in load_sample_images().images:
            photos.append(np.ascontiguousarray(np.asarray(rgb, np.uint8)[:, :, ::-1]))
    if photo_dir is not None:
        for path in sorted(Path(photo_dir).iterdir()):
            if path.suffix.lower() in _PHOTO_SUFFIXES:
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if image is not None:
                    photos.append(image)
    return photos


class BackgroundSampler:
    """Draws random backgrounds. `photo_dir`: optional folder of extra real photos (BGR files).
    `real_regions`: optional `training.synth.real_priors.RealPhotoRegions` (hand-free rectangles of real
    room photos), drawn with probability `real_prob` before any other kind."""

    def __init__(self, photo_dir: Path | None = None, real_regions: Any | None = None, real_prob: float = 0.5) -> None:
        self.photos = _load_photos(photo_dir)
        self.real_regions = real_regions
        self.real_prob = float(real_prob)

    def sample(
        self, rng: np.random.Generator, width: int, height: int, kind: str | None = None, person: bool | None = None
    ) -> np.ndarray:
        """A (height, width, 3) uint8 BGR background; `kind` forces one of `BACKGROUND_KINDS`, `person`
        forces a person silhouette on or off (None: random, 30 %)."""
        if kind is None and self.real_regions is not None and rng.random() < self.real_prob:
            region = self.real_regions.sample(rng, width, height)
            if region is not None:
                return region
        if kind is None and self.photos and rng.random() < 0.3:
            return self._photo(rng, width, height)
        ww, wh = _work_size(width, height)
        if kind is not None and kind not in BACKGROUND_KINDS:
            raise ValueError(f"unknown background kind {kind!r}; choose one of {BACKGROUND_KINDS}")
        index = BACKGROUND_KINDS.index(kind) if kind is not None else int(rng.choice(5, p=[0.12, 0.2, 0.33, 0.2, 0.15]))
        img = (_gradient, _noise_texture, _room, _clutter, _pattern)[index](rng, ww, wh)
        img = np.ascontiguousarray(img, dtype=np.float32)
        draw_person = rng.random() < 0.3
        if draw_person if person is None else person:
            img = _person(rng, img)
        blur = rng.uniform(0.0, 2.0)
        if blur > 0.4:
            img = cv2.GaussianBlur(img, (0, 0), blur)
        # Low-frequency illumination falloff, then upsampling (soft, like an out-of-focus background).
        light = value_noise(rng, ww, wh, octaves=1, base_cells=2)
        img *= (1.0 + rng.uniform(0.0, 0.35) * light)[..., None]
        small = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)

    def _photo(self, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
        photo = self.photos[int(rng.integers(len(self.photos)))]
        ph, pw = photo.shape[:2]
        scale = max(width / pw, height / ph) * rng.uniform(1.0, 2.5)
        cw, ch = int(np.ceil(width / scale)), int(np.ceil(height / scale))
        x0 = int(rng.integers(0, max(pw - cw, 0) + 1))
        y0 = int(rng.integers(0, max(ph - ch, 0) + 1))
        crop = photo[y0 : y0 + ch, x0 : x0 + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        return cv2.resize(np.ascontiguousarray(crop), (width, height), interpolation=cv2.INTER_LINEAR)
