"""Appearance statistics of real photos carried onto synthetic crops: amplitude-spectrum mixing.

Renders differ from camera images mostly in their frequency statistics (noise, blur, texture energy),
and Fourier-domain mixing is the cheap, label-preserving way to close that gap (Yang and Soatto,
"FDA: Fourier Domain Adaptation", CVPR 2020; Zhao et al., CVPR 2025, measure the frequency statistics
among the largest synthetic-to-real factors for hands). The low-frequency amplitude of the synthetic
crop is blended towards a real crop's, the phase (which carries the geometry, hence the labels) is kept.
Pure numpy, ``(S, S, 3)`` uint8 in and out, any colour order (both images in the same one).
"""
from __future__ import annotations

import numpy as np


def mix_amplitude_spectrum(
    synthetic: np.ndarray, real: np.ndarray, *, band: float = 0.08, weight: float = 0.5
) -> np.ndarray:
    """Blend the centred low-frequency amplitude (a square of side ``2 * band * S``) of ``synthetic``
    towards ``real``'s with ``weight`` in [0, 1]; phase and high frequencies stay the synthetic crop's.

    Args:
        synthetic, real: ``(S, S, 3)`` uint8 images of the same size.
        band: half-width of the mixed square as a fraction of the side (FDA's beta).
        weight: 0 leaves the synthetic crop unchanged, 1 takes the real amplitude.
    Returns:
        ``(S, S, 3)`` uint8.
    """
    if synthetic.shape != real.shape or synthetic.ndim != 3:
        raise ValueError(f"images must have the same (S, S, 3) shape, got {synthetic.shape} and {real.shape}")
    if not 0.0 <= weight <= 1.0 or not 0.0 < band <= 0.5:
        raise ValueError(f"need 0 <= weight <= 1 and 0 < band <= 0.5, got {weight}, {band}")
    src = np.fft.fftshift(np.fft.fft2(synthetic.astype(np.float32), axes=(0, 1)), axes=(0, 1))
    ref = np.fft.fftshift(np.fft.fft2(real.astype(np.float32), axes=(0, 1)), axes=(0, 1))
    amplitude, phase = np.abs(src), np.angle(src)
    h, w = synthetic.shape[:2]
    cy, cx = h // 2, w // 2
    ry, rx = max(1, int(band * h)), max(1, int(band * w))
    window = (slice(cy - ry, cy + ry + 1), slice(cx - rx, cx + rx + 1))
    amplitude[window] = (1.0 - weight) * amplitude[window] + weight * np.abs(ref)[window]
    mixed = np.fft.ifft2(np.fft.ifftshift(amplitude * np.exp(1j * phase), axes=(0, 1)), axes=(0, 1)).real
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
