"""Data shifts: pure NumPy transforms of evaluation inputs, each with a severity scale in [0, 1].

Every shift is a plain function ``shift(x, severity, rng, **info) -> np.ndarray``:

* ``x`` is a batch (first axis = samples) and is never modified; the result is a new array of the
  same shape and dtype. ``severity`` 0 returns an exact copy; 1 is the strongest shift.
* ``rng`` (a seeded ``np.random.Generator``) is the only source of randomness.
* ``info`` keywords describe the data; a shift takes the ones it needs:

  - image: ``layout`` ("NCHW", "NHWC" or "NHW"; detected when None) and ``value_range``
    ((low, high); detected when None: [0, 1], [0, 255] or the data's own min and max).
    Every image shift keeps values inside the value range.
  - text (token ids, shape (N, L)): ``mask`` (the attention mask, or None), ``pad_id``,
    ``vocab_size`` and ``keep_ends`` (leave the first and last real token, e.g. [CLS]/[SEP],
    alone). A text shift that removes a token writes ``pad_id`` there; the caller masks those
    positions out (see :func:`derive_mask`).
  - tabular / generic: ``value_range`` (clip to it when given) and ``fill`` (missing values).

Shifts live in a registry by modality (:data:`SHIFTS`); :func:`describe` turns a shift and a
severity into the phrase the report uses ("brightness is reduced to 33 %"). A user-defined
shift is any function with the same signature.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

import numpy as np

from quantscope.errors import ConfigError, DataError

Modality = Literal["image", "text", "tabular"]
MODALITIES: Final = ("image", "text", "tabular")


class Shift(Protocol):
    def __call__(
        self, x: np.ndarray, severity: float, rng: np.random.Generator, /, **info: Any
    ) -> np.ndarray: ...


@dataclass(frozen=True)
class ShiftSpec:
    """A registered shift: the function and how to describe it at a severity."""

    name: str
    modality: Modality
    fn: Callable[..., np.ndarray]
    describe: Callable[[float], str]


# ---------------------------------------------------------------------------
# Shared helpers.


def check_severity(severity: float) -> float:
    if isinstance(severity, bool) or not isinstance(severity, int | float | np.floating):
        raise ConfigError(f"severity must be a number in [0, 1], got {severity!r}")
    s = float(severity)
    if not 0.0 <= s <= 1.0:
        raise ConfigError(f"severity must be in [0, 1] (0 = unshifted), got {severity!r}")
    return s


def _finish(y: np.ndarray, like: np.ndarray, lo: float | None, hi: float | None) -> np.ndarray:
    """``y`` clipped to [lo, hi] and cast back to ``like``'s dtype (rounded for integers)."""
    if lo is not None and hi is not None:
        y = np.clip(y, lo, hi)
    if like.dtype.kind in "iu":
        info = np.iinfo(like.dtype)
        y = np.clip(np.rint(y), info.min, info.max)
    return y.astype(like.dtype, copy=False)


def detect_value_range(x: np.ndarray) -> tuple[float, float]:
    """[0, 1] or [0, 255] when the data fits them, else the data's own min and max."""
    if x.size == 0:
        raise DataError("cannot detect the value range of an empty array")
    if x.dtype.kind in "iu":
        if x.dtype == np.uint8 or (x.min() >= 0 and x.max() <= 255):
            return 0.0, 255.0
        return float(x.min()), float(x.max())
    lo, hi = float(np.min(x)), float(np.max(x))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise DataError("the data holds NaN or infinity; image shifts need finite values")
    if lo >= 0.0 and hi <= 1.0:
        return 0.0, 1.0
    if lo >= 0.0 and hi <= 255.0 and hi > 1.0:
        return 0.0, 255.0
    return lo, hi


def _value_range(x: np.ndarray, value_range: tuple[float, float] | None) -> tuple[float, float]:
    if value_range is None:
        return detect_value_range(x)
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"value_range must be (low, high), got {value_range!r}") from exc
    if not lo < hi:
        raise ConfigError(f"value_range must have low < high, got {value_range!r}")
    return lo, hi


def detect_layout(x: np.ndarray) -> str:
    """"NCHW", "NHWC" or "NHW" (grayscale without a channel axis) for an image batch."""
    if x.ndim == 3:
        return "NHW"
    if x.ndim != 4:
        raise DataError(
            f"image shifts need a batch of images (N, C, H, W), (N, H, W, C) or (N, H, W); got "
            f"shape {x.shape}; use modality='tabular' for other tensors"
        )
    first, last = x.shape[1] in (1, 2, 3, 4), x.shape[-1] in (1, 2, 3, 4)
    if last and not first:
        return "NHWC"
    return "NCHW"  # ONNX's convention, also when both look like channels


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
        lo, hi = _value_range(x, value_range)
        return _finish(back(fn(nchw, s, rng, lo, hi)), x, lo, hi)

    shift.__name__ = fn.__name__.lstrip("_")
    shift.__doc__ = fn.__doc__
    return shift


# ---------------------------------------------------------------------------
# Image shifts. Inside: x is float64 (N, C, H, W) with values in [lo, hi].


def _darker_factor(s: float) -> float:
    return 1.0 - 0.9 * s


def _brighter_factor(s: float) -> float:
    return 1.0 + 1.5 * s


def _contrast_factor(s: float) -> float:
    return 1.0 - 0.9 * s


def _noise_fraction(s: float) -> float:
    return 0.3 * s


def _blur_fraction(s: float) -> float:
    return 0.06 * s


def _down_fraction(s: float) -> float:
    return 1.0 - 0.85 * s


def _angle(s: float) -> float:
    return 90.0 * s


def _occluded_fraction(s: float) -> float:
    return 0.5 * s


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


# ---------------------------------------------------------------------------
# Text shifts, on token ids (N, L) with an optional attention mask.


def _real_positions(ids: np.ndarray, mask: np.ndarray | None, pad_id: int) -> np.ndarray:
    if mask is None:
        return ids != pad_id
    mask = np.asarray(mask)
    if mask.shape != ids.shape:
        raise DataError(f"attention mask shape {mask.shape} differs from token ids shape {ids.shape}")
    return mask != 0


def _editable(real: np.ndarray, keep_ends: bool) -> np.ndarray:
    """Real positions a shift may change (all but the first and last real token if keep_ends)."""
    edit = real.copy()
    if keep_ends:
        for row in range(real.shape[0]):
            where = np.flatnonzero(real[row])
            if len(where):
                edit[row, where[0]] = False
                edit[row, where[-1]] = False
    return edit


def _check_ids(ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.dtype.kind not in "iu":
        raise DataError(
            f"text shifts need integer token ids of shape (samples, length); got {ids.dtype} "
            f"{ids.shape}"
        )
    return ids


def _compact(ids: np.ndarray, real: np.ndarray, drop: np.ndarray, pad_id: int) -> np.ndarray:
    """Remove ``drop`` positions from each row's real tokens, closing the gap; pad the freed end."""
    out = ids.copy()
    for row in range(ids.shape[0]):
        where = np.flatnonzero(real[row])
        if not len(where):
            continue
        kept = ids[row, where[~drop[row, where]]]
        out[row, where] = pad_id
        out[row, where[: len(kept)]] = kept
    return out


def token_dropout(
    x: np.ndarray,
    severity: float,
    rng: np.random.Generator,
    /,
    *,
    mask: np.ndarray | None = None,
    pad_id: int = 0,
    keep_ends: bool = True,
    **_: Any,
) -> np.ndarray:
    """Missing words: a fraction (half at severity 1) of the real tokens removed, the rest closed up."""
    s = check_severity(severity)
    ids = _check_ids(x)
    if s == 0.0:
        return ids.copy()
    real = _real_positions(ids, mask, pad_id)
    drop = _editable(real, keep_ends) & (rng.random(ids.shape) < _dropped_fraction(s))
    return _compact(ids, real, drop, pad_id)


def token_substitution(
    x: np.ndarray,
    severity: float,
    rng: np.random.Generator,
    /,
    *,
    mask: np.ndarray | None = None,
    pad_id: int = 0,
    vocab_size: int | None = None,
    keep_ends: bool = True,
    **_: Any,
) -> np.ndarray:
    """Typos and noise: a fraction (half at severity 1) of the real tokens replaced by random ids."""
    s = check_severity(severity)
    ids = _check_ids(x)
    if s == 0.0:
        return ids.copy()
    vocab = int(vocab_size) if vocab_size is not None else int(ids.max()) + 1
    real = _real_positions(ids, mask, pad_id)
    change = _editable(real, keep_ends) & (rng.random(ids.shape) < _substituted_fraction(s))
    # draw from the ids other than pad_id, so a substituted token is never read as padding
    draws = rng.integers(0, max(1, vocab - 1), size=ids.shape)
    draws = np.where(draws >= pad_id, draws + 1, draws) if vocab > 1 else draws
    return np.where(change, draws, ids).astype(ids.dtype)


def truncation(
    x: np.ndarray,
    severity: float,
    rng: np.random.Generator,
    /,
    *,
    mask: np.ndarray | None = None,
    pad_id: int = 0,
    keep_ends: bool = True,
    **_: Any,
) -> np.ndarray:
    """Cut-off inputs: only the first fraction of each sequence kept (a quarter at severity 1)."""
    s = check_severity(severity)
    ids = _check_ids(x)
    if s == 0.0:
        return ids.copy()
    real = _real_positions(ids, mask, pad_id)
    drop = np.zeros_like(real)
    keep = _kept_fraction(s)
    for row in range(ids.shape[0]):
        where = np.flatnonzero(real[row])
        if len(where) <= 2:
            continue
        n_keep = max(1, math.ceil(len(where) * keep))
        body = where[1:-1] if keep_ends else where
        cut = body[max(0, n_keep - (2 if keep_ends else 0)) :]
        drop[row, cut] = True
    return _compact(ids, real, drop, pad_id)


def _dropped_fraction(s: float) -> float:
    return 0.5 * s


def _substituted_fraction(s: float) -> float:
    return 0.5 * s


def _kept_fraction(s: float) -> float:
    return 1.0 - 0.75 * s


def derive_mask(
    mask: np.ndarray, before: np.ndarray, after: np.ndarray, pad_id: int
) -> np.ndarray:
    """The attention mask after a text shift: positions the shift turned into ``pad_id`` are 0."""
    out = np.array(mask, copy=True)
    out[(after == pad_id) & (before != pad_id)] = 0
    return out


# ---------------------------------------------------------------------------
# Tabular / generic shifts: the last axis holds the features.


def _tabular(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    def shift(
        x: np.ndarray,
        severity: float,
        rng: np.random.Generator,
        /,
        *,
        value_range: tuple[float, float] | None = None,
        fill: float = 0.0,
        **_: Any,
    ) -> np.ndarray:
        s = check_severity(severity)
        x = np.asarray(x)
        if x.ndim < 1 or x.dtype.kind not in "fiu":
            raise DataError(f"tabular shifts need a numeric array, got {x.dtype} {x.shape}")
        if s == 0.0:
            return x.copy()
        lo, hi = (None, None) if value_range is None else _value_range(x, value_range)
        y = fn(x.astype(np.float64), s, rng, fill=fill)
        return _finish(y, x, lo, hi)

    shift.__name__ = fn.__name__.lstrip("_")
    shift.__doc__ = fn.__doc__
    return shift


def _feature_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axis=axes) if axes else x.mean()
    std = x.std(axis=axes) if axes else x.std()
    return mean, np.where(std > 0, std, 1.0)


def _feature_noise(x: np.ndarray, s: float, rng: np.random.Generator, **_: Any) -> np.ndarray:
    """Measurement noise: gaussian noise of up to one standard deviation of each feature."""
    _, std = _feature_stats(x)
    return x + rng.standard_normal(x.shape) * std * _feature_noise_fraction(s)


def _feature_scaling(x: np.ndarray, s: float, rng: np.random.Generator, **_: Any) -> np.ndarray:
    """A change of units: every feature multiplied by the same factor (up to ×3)."""
    return x * _scale_factor(s)


def _missing_values(x: np.ndarray, s: float, rng: np.random.Generator, *, fill: float = 0.0, **_: Any) -> np.ndarray:
    """Missing values: a fraction (half at severity 1) of the entries replaced by the fill value."""
    return np.where(rng.random(x.shape) < _missing_fraction(s), float(fill), x)


def _mean_shift(x: np.ndarray, s: float, rng: np.random.Generator, **_: Any) -> np.ndarray:
    """Covariate shift of location: every feature moved by up to 1.5 of its standard deviations."""
    _, std = _feature_stats(x)
    return x + _mean_shift_sigmas(s) * std


def _target_quantiles(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` sorted standardized samples of a distribution, by kind."""
    if kind == "uniform":
        v = rng.uniform(-1.0, 1.0, n)
    elif kind == "gaussian":
        v = rng.standard_normal(n)
    else:  # skewed: log-normal
        v = rng.lognormal(0.0, 0.8, n)
    v = np.sort(v)
    std = v.std()
    return (v - v.mean()) / (std if std > 0 else 1.0)


def _covariate(kind: str) -> Callable[..., np.ndarray]:
    def fn(x: np.ndarray, s: float, rng: np.random.Generator, **_: Any) -> np.ndarray:
        mean, std = _feature_stats(x)
        flat = x.reshape(-1, x.shape[-1]) if x.ndim > 1 else x.reshape(-1, 1)
        m = flat.shape[0]
        target = np.empty_like(flat)
        for f in range(flat.shape[1]):
            ranks = np.argsort(np.argsort(flat[:, f], kind="stable"), kind="stable")
            target[:, f] = _target_quantiles(kind, m, rng)[ranks]
        target = target.reshape(x.shape) * std + mean
        return (1.0 - s) * x + s * target  # rank-preserving blend towards the target shape

    fn.__name__ = f"covariate_{kind}"
    fn.__doc__ = (
        f"Covariate shift: each feature's distribution moved towards a {kind} one with the same "
        "mean and standard deviation (ranks kept)."
    )
    return fn


def _feature_noise_fraction(s: float) -> float:
    return 1.0 * s


def _scale_factor(s: float) -> float:
    return 1.0 + 2.0 * s


def _missing_fraction(s: float) -> float:
    return 0.5 * s


def _mean_shift_sigmas(s: float) -> float:
    return 1.5 * s


feature_noise = _tabular(_feature_noise)
feature_scaling = _tabular(_feature_scaling)
missing_values = _tabular(_missing_values)
mean_shift = _tabular(_mean_shift)
covariate_uniform = _tabular(_covariate("uniform"))
covariate_gaussian = _tabular(_covariate("gaussian"))
covariate_skewed = _tabular(_covariate("skewed"))


# ---------------------------------------------------------------------------
# The registry.


def _pct(v: float) -> str:
    return f"{100 * v:.0f} %"


_SPECS: Final[tuple[ShiftSpec, ...]] = (
    ShiftSpec("darker", "image", darker, lambda s: f"brightness is reduced to {_pct(_darker_factor(s))}"),
    ShiftSpec("brighter", "image", brighter, lambda s: f"brightness is raised to {_pct(_brighter_factor(s))}"),
    ShiftSpec("contrast", "image", contrast, lambda s: f"contrast is reduced to {_pct(_contrast_factor(s))}"),
    ShiftSpec(
        "gaussian_noise", "image", gaussian_noise,
        lambda s: f"gaussian noise of σ = {_pct(_noise_fraction(s))} of the value range is added",
    ),
    ShiftSpec("blur", "image", blur, lambda s: f"the image is blurred (σ = {_pct(_blur_fraction(s))} of its side)"),
    ShiftSpec(
        "downsample", "image", downsample,
        lambda s: f"the image is down-sampled to {_pct(_down_fraction(s))} of its size and back",
    ),
    ShiftSpec("rotate", "image", rotate, lambda s: f"the image is rotated by {_angle(s):.0f}°"),
    ShiftSpec("occlusion", "image", occlusion, lambda s: f"{_pct(_occluded_fraction(s))} of the image is occluded"),
    ShiftSpec("jpeg", "image", jpeg, lambda s: f"the image is JPEG-compressed at quality {_jpeg_quality(s)}"),
    ShiftSpec("token_dropout", "text", token_dropout, lambda s: f"{_pct(_dropped_fraction(s))} of the tokens are dropped"),
    ShiftSpec(
        "token_substitution", "text", token_substitution,
        lambda s: f"{_pct(_substituted_fraction(s))} of the tokens are replaced by random ones",
    ),
    ShiftSpec("truncation", "text", truncation, lambda s: f"inputs are truncated to {_pct(_kept_fraction(s))} of their length"),
    ShiftSpec(
        "feature_noise", "tabular", feature_noise,
        lambda s: f"noise of {_feature_noise_fraction(s):.2g} standard deviations is added to every feature",
    ),
    ShiftSpec("feature_scaling", "tabular", feature_scaling, lambda s: f"every feature is scaled by ×{_scale_factor(s):.2g}"),
    ShiftSpec(
        "missing_values", "tabular", missing_values,
        lambda s: f"{_pct(_missing_fraction(s))} of the values are missing (replaced by the fill value)",
    ),
    ShiftSpec(
        "mean_shift", "tabular", mean_shift,
        lambda s: f"every feature is shifted by {_mean_shift_sigmas(s):.2g} standard deviations",
    ),
    *(
        ShiftSpec(
            f"covariate_{kind}", "tabular", fn,
            lambda s, kind=kind: f"the features' distribution is moved {_pct(s)} of the way to a {kind} one",
        )
        for kind, fn in (
            ("uniform", covariate_uniform), ("gaussian", covariate_gaussian), ("skewed", covariate_skewed)
        )
    ),
)

SHIFTS: Final[Mapping[str, Mapping[str, ShiftSpec]]] = {
    modality: {spec.name: spec for spec in _SPECS if spec.modality == modality} for modality in MODALITIES
}
"""Built-in shifts by modality, then by name."""


def check_modality(modality: str) -> str:
    if modality not in MODALITIES:
        raise ConfigError(f"modality {modality!r} is not known; choose one of {list(MODALITIES)}")
    return modality


def shifts_for(modality: str) -> dict[str, ShiftSpec]:
    """The built-in shifts of a modality (a new dict: the caller may change it)."""
    return dict(SHIFTS[check_modality(modality)])


def user_shift(name: str, fn: Callable[..., np.ndarray], modality: str) -> ShiftSpec:
    """Wrap a user-defined shift function; it is described as "<name> at severity s"."""
    if not callable(fn):
        raise ConfigError(f"shift {name!r} must be a function shift(x, severity, rng, **info)")
    return ShiftSpec(name, check_modality(modality), fn, lambda s: f"{name} is applied at severity {s:g}")  # type: ignore[arg-type]


def describe(spec: ShiftSpec, severity: float) -> str:
    return spec.describe(check_severity(severity))


__all__ = [
    "MODALITIES",
    "SHIFTS",
    "Shift",
    "ShiftSpec",
    "blur",
    "brighter",
    "contrast",
    "covariate_gaussian",
    "covariate_skewed",
    "covariate_uniform",
    "darker",
    "derive_mask",
    "describe",
    "detect_layout",
    "detect_value_range",
    "downsample",
    "feature_noise",
    "feature_scaling",
    "gaussian_noise",
    "jpeg",
    "mean_shift",
    "missing_values",
    "occlusion",
    "rotate",
    "shifts_for",
    "token_dropout",
    "token_substitution",
    "truncation",
    "user_shift",
]
