"""Camera-like image degradations: motion blur, defocus, sensor noise, JPEG artefacts, colour jitter.

All functions take and return BGR uint8 images (H, W, 3) unless stated, and draw their randomness from
the `np.random.Generator` they are given (deterministic by seed).
"""
from __future__ import annotations

import cv2
import numpy as np


def motion_blur_kernel(length_px: float, angle_rad: float) -> np.ndarray:
    """Normalised (k, k) float32 line kernel of the given length and direction."""
    size = max(int(np.ceil(length_px)) | 1, 3)
    kernel = np.zeros((size, size), np.float32)
    c = (size - 1) / 2.0
    dx, dy = np.cos(angle_rad) * length_px / 2.0, np.sin(angle_rad) * length_px / 2.0
    cv2.line(kernel, (int(round(c - dx)), int(round(c - dy))), (int(round(c + dx)), int(round(c + dy))), 1.0, 1, cv2.LINE_AA)
    return kernel / max(float(kernel.sum()), 1e-6)


def motion_blur(image: np.ndarray, length_px: float, angle_rad: float) -> np.ndarray:
    """Linear motion blur of any (H, W[, C]) image (uint8 or float)."""
    if length_px < 1.5:
        return image
    return cv2.filter2D(image, -1, motion_blur_kernel(length_px, angle_rad), borderType=cv2.BORDER_REFLECT)


_NOISE_SIDE = 512
_noise_cache: list[np.ndarray] = []


def _noise_bank() -> np.ndarray:
    """A fixed (2 * 512, 2 * 512, 4) float32 bank of standard normal noise (1 luma + 3 chroma planes).

    Sampling windows of it at random offsets and flips is much cheaper than drawing fresh normals for
    every pixel of every sample, and the repeats are invisible to a network.
    """
    if not _noise_cache:
        rng = np.random.default_rng(271828)
        _noise_cache.append(rng.standard_normal((2 * _NOISE_SIDE, 2 * _NOISE_SIDE, 4)).astype(np.float32))
    return _noise_cache[0]


def _noise_window(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    bank = _noise_bank()
    if height > bank.shape[0] or width > bank.shape[1]:
        reps = (height // bank.shape[0] + 1, width // bank.shape[1] + 1, 1)
        return np.tile(bank, reps)[:height, :width]
    oy = int(rng.integers(0, bank.shape[0] - height + 1))
    ox = int(rng.integers(0, bank.shape[1] - width + 1))
    window = bank[oy : oy + height, ox : ox + width]
    if rng.random() < 0.5:
        window = window[::-1]
    return window[:, ::-1] if rng.random() < 0.5 else window


def sensor_noise(image: np.ndarray, rng: np.random.Generator, sigma_read: float, gain: float, chroma: float) -> np.ndarray:
    """Poisson-Gaussian-like noise: std = sqrt(sigma_read^2 + gain * I) (I in [0, 1]), plus chroma noise.

    With probability 0.5 the noise is made at half resolution and upsampled, as demosaicing and
    denoising in webcams make it spatially correlated.
    """
    h, w = image.shape[:2]
    img = image.astype(np.float32) * np.float32(1.0 / 255.0)
    std = np.sqrt(sigma_read**2 + gain * img.mean(axis=2, keepdims=True))
    if rng.random() < 0.5:
        noise = _noise_window(rng, h, w)
    else:
        noise = cv2.resize(_noise_window(rng, max(h // 2, 1), max(w // 2, 1)), (w, h)) * np.float32(1.4)
    img += std * (noise[:, :, :1] + np.float32(chroma) * noise[:, :, 1:])
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Round trip through JPEG at the given quality (1-100)."""
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not JPEG-encode the image")
    return cv2.imdecode(buffer, cv2.IMREAD_COLOR)


def color_jitter(
    image: np.ndarray,
    brightness: float = 1.0,
    contrast: float = 1.0,
    saturation: float = 1.0,
    hue_shift_deg: float = 0.0,
    gains_bgr: tuple[float, float, float] = (1.0, 1.0, 1.0),
    gamma: float = 1.0,
) -> np.ndarray:
    """Photometric change of a BGR uint8 image: white balance gains, brightness, contrast about the mean,
    saturation about the grey value, hue rotation (degrees) and gamma. Returns BGR uint8.

    Per-channel steps are applied through 256-entry lookup tables (fast on large images)."""
    levels = np.arange(256, dtype=np.float32) / 255.0
    mean = float(np.mean(cv2.mean(image)[:3])) / 255.0 * brightness * float(np.mean(gains_bgr))
    channels = []
    for c in range(3):
        lut = levels * (gains_bgr[c] * brightness)
        lut = np.clip((lut - mean) * contrast + mean, 0.0, 1.0)
        channels.append(cv2.LUT(image[:, :, c], (lut * 255.0 + 0.5).astype(np.uint8)))
    out = cv2.merge(channels)
    if abs(saturation - 1.0) > 1e-3:
        grey = cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        out = cv2.addWeighted(out, saturation, grey, 1.0 - saturation, 0.0)
    if abs(gamma - 1.0) > 1e-3:
        out = cv2.LUT(out, (np.power(levels, gamma) * 255.0 + 0.5).astype(np.uint8))
    if abs(hue_shift_deg) > 0.5:
        hsv = cv2.cvtColor(out, cv2.COLOR_BGR2HSV)
        hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + int(round(hue_shift_deg / 2.0))) % 180).astype(np.uint8)
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    return out


def random_color_jitter(image: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """`color_jitter` with random settings; `strength` scales every range (1 = camera-to-camera variety)."""
    s = strength
    gains = tuple(float(g) for g in 1.0 + rng.uniform(-0.08, 0.08, 3) * s)
    return color_jitter(
        image,
        brightness=float(np.exp(rng.uniform(-0.35, 0.3) * s)),
        contrast=float(np.exp(rng.uniform(-0.3, 0.25) * s)),
        saturation=float(np.exp(rng.uniform(-0.35, 0.25) * s)),
        hue_shift_deg=float(rng.uniform(-4.0, 4.0) * s),
        gains_bgr=gains,  # type: ignore[arg-type]
        gamma=float(np.exp(rng.uniform(-0.2, 0.2) * s)),
    )


def camera_pipeline(image: np.ndarray, rng: np.random.Generator, pixel_scale: float = 1.0) -> np.ndarray:
    """Whole-frame degradations of a clean render, in the order a camera applies them: optics blur,
    camera shake, sensor noise, colour processing, JPEG. `pixel_scale` (<= 1) is the render scale
    relative to the real sensor, so blur lengths shrink with it. BGR uint8 in and out."""
    out = image
    if rng.random() < 0.35:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.4, 1.3) * max(pixel_scale, 0.4))
    if rng.random() < 0.12:
        out = motion_blur(out, rng.uniform(2.0, 10.0) * pixel_scale, rng.uniform(0, np.pi))
    if rng.random() < 0.8:
        out = sensor_noise(out, rng, sigma_read=rng.uniform(0.002, 0.012), gain=rng.uniform(0.0, 0.002), chroma=rng.uniform(0.0, 0.4))
    out = random_color_jitter(out, rng, strength=1.0)
    if rng.random() < 0.7:
        out = jpeg(out, int(rng.integers(30, 96)))
    return out
