"""Image shifts. Inside: x is float64 (N, C, H, W) with values in [lo, hi]."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

import numpy as np

from quantscope.analysis.shifts.common import (
    ShiftSpec,
    check_severity,
    detect_layout,
    finish,
    linear,
    named_like,
    pct,
    resolve_value_range,
)
from quantscope.errors import ConfigError


def _to_nchw(x: np.ndarray, layout: str | None) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    layout = detect_layout(x) if layout is None else layout.upper()
    if layout == "NCHW" and x.ndim == 4:
        return x.astype(np.float64), lambda y: y
    if layout == "NHWC" and x.ndim == 4:
        return np.moveaxis(x, -1, 1).astype(np.float64), lambda y: np.moveaxis(y, 1, -1)
    if layout == "NHW" and x.ndim == 3:
        return x[:, None].astype(np.float64), lambda y: y[:, 0]
    raise ConfigError(
        f"layout {layout!r} does not fit an array of shape {x.shape}; use 'NCHW', 'NHWC' "
        "(4-D) or 'NHW' (3-D), or leave it out to detect it"
    )


def _image(
    fn: Callable[[np.ndarray, float, np.random.Generator, float, float], np.ndarray],
) -> Callable[..., np.ndarray]:
    """Wrap a shift over float64 NCHW images in [lo, hi] into the public signature."""

    def shift(
        x: np.ndarray,
        severity: float,
        rng: np.random.Generator,
        /,
        *,
        layout: str | None = None,
        value_range: tuple[float, float] | None = None,
        **_: Any,
    ) -> np.ndarray:
        s = check_severity(severity)
        x = np.asarray(x)
        nchw, back = _to_nchw(x, layout)
        if s == 0.0:
            return x.copy()
        lo, hi = resolve_value_range(x, value_range)
        return finish(back(fn(nchw, s, rng, lo, hi)), x, lo, hi)

    return named_like(shift, fn)



_darker_factor = linear(1.0, -0.9)
_brighter_factor = linear(1.0, 1.5)
_contrast_factor = linear(1.0, -0.9)
_noise_fraction = linear(0.0, 0.3)
_blur_fraction = linear(0.0, 0.06)
_down_fraction = linear(1.0, -0.85)
_angle = linear(0.0, 90.0)
_occluded_fraction = linear(0.0, 0.5)
def _jpeg_quality(s: float) -> int:
    return max(1, round(100 - 95 * s))


def _darker(x: np.ndarray, s: float, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    """Low light: brightness scaled towards the bottom of the range."""
    return lo + (x - lo) * _darker_factor(s)


def _brighter(x: np.ndarray, s: float, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    """Over-exposure: brightness gain above 1, clipped at the top of the range."""
    return lo + (x - lo) * _brighter_factor(s)


def _contrast(x: np.ndarray, s: float, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    """Lower contrast: each image and channel pulled towards its own mean."""
    mean = x.mean(axis=(2, 3), keepdims=True)
    return mean + (x - mean) * _contrast_factor(s)


def _gaussian_noise(x: np.ndarray, s: float, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    """Sensor noise: additive gaussian noise, sigma a fraction of the value range."""
    return x + rng.standard_normal(x.shape) * (_noise_fraction(s) * (hi - lo))


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = max(1, math.ceil(3.0 * sigma))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def _convolve_axis(x: np.ndarray, kernel: np.ndarray, axis: int) -> np.ndarray:
    r = len(kernel) // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (r, r)
    padded = np.pad(x, pad, mode="edge")
    n = x.shape[axis]
    out = np.zeros_like(x)
    for i, w in enumerate(kernel):
        out += w * np.take(padded, np.arange(i, i + n), axis=axis)
    return out


def _blur(x: np.ndarray, s: float, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    """Out-of-focus camera: separable gaussian blur."""
    sigma = max(0.3, _blur_fraction(s) * min(x.shape[2], x.shape[3]))
    k = _gaussian_kernel(sigma)
    return _convolve_axis(_convolve_axis(x, k, 2), k, 3)


def _area_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) matrix averaging each output cell over the input cells it covers."""
    edges = np.linspace(0.0, src, dst + 1)
    m = np.zeros((dst, src))
    for i in range(dst):
        a, b = edges[i], edges[i + 1]
        for j in range(math.floor(a), min(src, math.ceil(b))):
            m[i, j] = min(b, j + 1) - max(a, j)
        m[i] /= m[i].sum()
    return m


def _linear_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) matrix of bilinear up-sampling (pixel centres aligned, edges clamped)."""
    pos = np.clip((np.arange(dst) + 0.5) * src / dst - 0.5, 0.0, src - 1)
    left = np.floor(pos).astype(int)
    right = np.minimum(left + 1, src - 1)
    frac = pos - left
    m = np.zeros((dst, src))
    m[np.arange(dst), left] += 1.0 - frac
    m[np.arange(dst), right] += frac
    return m


def _downsample(x: np.ndarray, s: float, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    """Low-resolution camera: area down-sampling, then bilinear back to the original size."""
    h, w = x.shape[2], x.shape[3]
    f = _down_fraction(s)
    h2, w2 = max(1, round(h * f)), max(1, round(w * f))
    mh = _linear_matrix(h2, h) @ _area_matrix(h, h2)
    mw = _linear_matrix(w2, w) @ _area_matrix(w, w2)
    return np.einsum("ih,nchw,jw->ncij", mh, x, mw, optimize=True)


def _rotate(x: np.ndarray, s: float, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    """Camera at an angle: rotation about the centre (direction random per image), edges repeated."""
    n, _c, h, w = x.shape
    signs = rng.choice(np.array([-1.0, 1.0]), size=n)
    yy, xx = np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing="ij")
    out = np.empty_like(x)
    for i in range(n):
        t = math.radians(_angle(s)) * signs[i]
        cos, sin = math.cos(t), math.sin(t)
        sy = np.clip(cos * yy - sin * xx + (h - 1) / 2, 0, h - 1)  # inverse map: output -> input
        sx = np.clip(sin * yy + cos * xx + (w - 1) / 2, 0, w - 1)
        y0, x0 = np.floor(sy).astype(int), np.floor(sx).astype(int)
        y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
        fy, fx = sy - y0, sx - x0
        img = x[i]
        out[i] = (
            img[:, y0, x0] * (1 - fy) * (1 - fx)
            + img[:, y0, x1] * (1 - fy) * fx
            + img[:, y1, x0] * fy * (1 - fx)
            + img[:, y1, x1] * fy * fx
        )
    return out


def _occlusion(x: np.ndarray, s: float, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    """Something in front of the camera: one square patch per image, filled with the image mean."""
    n, _c, h, w = x.shape
    side = min(h, w, max(1, round(math.sqrt(_occluded_fraction(s) * h * w))))
    out = x.copy()
    tops = rng.integers(0, h - side + 1, size=n)
    lefts = rng.integers(0, w - side + 1, size=n)
    means = x.mean(axis=(2, 3))
    for i in range(n):
        out[i, :, tops[i] : tops[i] + side, lefts[i] : lefts[i] + side] = means[i][:, None, None]
    return out


_JPEG_LUMA: Final = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.float64,
)
_JPEG_CHROMA: Final = np.array(
    [
        [17, 18, 24, 47, 99, 99, 99, 99], [18, 21, 26, 66, 99, 99, 99, 99],
        [24, 26, 56, 99, 99, 99, 99, 99], [47, 66, 99, 99, 99, 99, 99, 99],
        *[[99] * 8 for _ in range(4)],
    ],
    dtype=np.float64,
)


def _dct_matrix(n: int = 8) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    m[0] /= math.sqrt(2.0)
    return m


def _jpeg_table(base: np.ndarray, quality: int) -> np.ndarray:
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality  # the IJG quality scaling
    return np.clip(np.floor((base * scale + 50) / 100), 1, 255)


def _jpeg_plane(p: np.ndarray, table: np.ndarray) -> np.ndarray:
    """8x8 block DCT, quantization by ``table``, inverse DCT; p is (N, H, W) in 0..255."""
    n, h, w = p.shape
    ph, pw = -h % 8, -w % 8
    q = np.pad(p, ((0, 0), (0, ph), (0, pw)), mode="edge") - 128.0
    hb, wb = q.shape[1] // 8, q.shape[2] // 8
    blocks = q.reshape(n, hb, 8, wb, 8)
    d = _dct_matrix()
    coef = np.einsum("ai,nhiwj,bj->nhawb", d, blocks, d, optimize=True)
    coef = np.rint(coef / table[None, None, :, None, :]) * table[None, None, :, None, :]
    back = np.einsum("ai,nhawb,bj->nhiwj", d, coef, d, optimize=True)
    return (back.reshape(n, hb * 8, wb * 8) + 128.0)[:, :h, :w]


def _jpeg(x: np.ndarray, s: float, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    """JPEG-style compression: 8x8 DCT quantized with the standard tables at a quality level."""
    quality = _jpeg_quality(s)
    luma, chroma = _jpeg_table(_JPEG_LUMA, quality), _jpeg_table(_JPEG_CHROMA, quality)
    p = np.clip((x - lo) / (hi - lo) * 255.0, 0.0, 255.0)
    if p.shape[1] == 3:  # RGB -> YCbCr, as JPEG encoders do
        r, g, b = p[:, 0], p[:, 1], p[:, 2]
        y = 0.299 * r + 0.587 * g + 0.114 * b
        cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
        cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
        y, cb, cr = _jpeg_plane(y, luma), _jpeg_plane(cb, chroma), _jpeg_plane(cr, chroma)
        out = np.stack(
            [
                y + 1.402 * (cr - 128),
                y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128),
                y + 1.772 * (cb - 128),
            ],
            axis=1,
        )
    else:
        out = np.stack([_jpeg_plane(p[:, ch], luma) for ch in range(p.shape[1])], axis=1)
    out = np.rint(np.clip(out, 0.0, 255.0))  # 8-bit pixels
    return lo + out / 255.0 * (hi - lo)


darker = _image(_darker)
brighter = _image(_brighter)
contrast = _image(_contrast)
gaussian_noise = _image(_gaussian_noise)
blur = _image(_blur)
downsample = _image(_downsample)
rotate = _image(_rotate)
occlusion = _image(_occlusion)
jpeg = _image(_jpeg)



SPECS: Final[tuple[ShiftSpec, ...]] = (
    ShiftSpec("darker", "image", darker, lambda s: f"brightness is reduced to {pct(_darker_factor(s))}"),
    ShiftSpec("brighter", "image", brighter, lambda s: f"brightness is raised to {pct(_brighter_factor(s))}"),
    ShiftSpec("contrast", "image", contrast, lambda s: f"contrast is reduced to {pct(_contrast_factor(s))}"),
    ShiftSpec(
        "gaussian_noise", "image", gaussian_noise,
        lambda s: f"gaussian noise of σ = {pct(_noise_fraction(s))} of the value range is added",
    ),
    ShiftSpec("blur", "image", blur, lambda s: f"the image is blurred (σ = {pct(_blur_fraction(s))} of its side)"),
    ShiftSpec(
        "downsample", "image", downsample,
        lambda s: f"the image is down-sampled to {pct(_down_fraction(s))} of its size and back",
    ),
    ShiftSpec("rotate", "image", rotate, lambda s: f"the image is rotated by {_angle(s):.0f}°"),
    ShiftSpec("occlusion", "image", occlusion, lambda s: f"{pct(_occluded_fraction(s))} of the image is occluded"),
    ShiftSpec("jpeg", "image", jpeg, lambda s: f"the image is JPEG-compressed at quality {_jpeg_quality(s)}"),
)
