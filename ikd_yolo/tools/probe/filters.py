"""The probe's Fourier filters: low- and high-pass at a cut-off radius in cycles per longer image side."""

from __future__ import annotations

import numpy as np

KINDS = ("low", "high")
FILTERS = ("ideal", "gaussian")


def frequency_distance(h: int, w: int) -> np.ndarray:
    """Distance of each ``rfft2`` coefficient of an h x w image from DC, in cycles per longer image side."""
    side = max(h, w)
    fy = np.fft.fftfreq(h)[:, None] * side
    fx = np.fft.rfftfreq(w)[None, :] * side
    return np.hypot(fy, fx)


def frequency_mask(h: int, w: int, radius: float, kind: str, filter: str = "ideal") -> np.ndarray:
    """Transfer function (0..1) over the ``rfft2`` layout of an h x w image; see the module docstring."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if filter not in FILTERS:
        raise ValueError(f"filter must be one of {FILTERS}, got {filter!r}")
    if radius <= 0:
        raise ValueError(f"radius must be positive, got {radius}")
    d = frequency_distance(h, w)
    low = (d <= radius).astype(np.float64) if filter == "ideal" else np.exp(-0.5 * (d / radius) ** 2)
    mask = low if kind == "low" else 1.0 - low
    if kind == "high":
        mask[0, 0] = 1.0  # keep the mean (DC): a viewable image at the original brightness
    return mask


def fourier_filter(img: np.ndarray, radius: float, kind: str, filter: str = "ideal") -> np.ndarray:
    """Low- or high-pass ``img`` (H x W or H x W x C) per channel with numpy's FFT; float64 result, not clipped."""
    x = np.asarray(img, np.float64)
    squeeze = x.ndim == 2
    if squeeze:
        x = x[..., None]
    h, w = x.shape[:2]
    spectrum = np.fft.rfft2(x, axes=(0, 1))
    out = np.fft.irfft2(spectrum * frequency_mask(h, w, radius, kind, filter)[..., None], s=(h, w), axes=(0, 1))
    return out[..., 0] if squeeze else out


def filter_image(img: np.ndarray, radius: float, kind: str, filter: str = "ideal") -> np.ndarray:
    """:func:`fourier_filter` rounded and clipped back to ``img``'s integer type (0..255 for uint8)."""
    info = np.iinfo(img.dtype) if np.issubdtype(img.dtype, np.integer) else None
    out = fourier_filter(img, radius, kind, filter)
    if info is None:
        return out.astype(img.dtype)
    return np.clip(np.rint(out), info.min, info.max).astype(img.dtype)
