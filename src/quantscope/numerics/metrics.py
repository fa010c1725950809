"""Error metrics between a reference output and a quantized one.

All functions are pure, accumulate in float64, and require both arrays to have the same
shape (no silent broadcasting: comparing the wrong tensors should fail loudly).
"""

from __future__ import annotations

import math

import numpy as np

from quantscope.errors import ConfigError

__all__ = [
    "accuracy",
    "cosine_similarity",
    "kl_divergence",
    "max_abs_error",
    "mean_abs_error",
    "softmax",
    "sqnr_db",
    "top1_agreement",
    "topk_accuracy",
]


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(a)
    y = np.asarray(b)
    for name, arr in (("first", x), ("second", y)):
        if arr.dtype.kind not in "fiub":
            raise ConfigError(f"{name} array must be real numeric, got dtype {arr.dtype}")
    if x.shape != y.shape:
        raise ConfigError(f"arrays to compare differ in shape: {x.shape} vs {y.shape}")
    return x.astype(np.float64, copy=False), y.astype(np.float64, copy=False)


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio ``10 * log10(sum(ref**2) / sum((ref - test)**2))``.

    ``inf`` when the arrays are identical (including both empty), ``-inf`` when the
    reference is all zero but the test is not.
    """
    ref, tst = _pair(reference, test)
    noise = float(np.sum(np.square(ref - tst)))
    signal = float(np.sum(np.square(ref)))
    if math.isnan(noise) or math.isnan(signal):
        return math.nan
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def cosine_similarity(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """Cosine similarity of ``a`` and ``b`` along ``axis``, one value per remaining index.

    Two zero vectors are identical (1.0); a zero vector against a non-zero one is 0.0.
    Results are clipped to ``[-1, 1]`` against rounding.
    """
    x, y = _pair(a, b)
    if x.ndim == 0:
        raise ConfigError("cosine similarity needs at least 1-D arrays")
    if not -x.ndim <= axis < x.ndim:
        raise ConfigError(f"axis {axis} is out of range for {x.ndim}-D arrays")
    dot = np.sum(x * y, axis=axis)
    na = np.sqrt(np.sum(x * x, axis=axis))
    nb = np.sqrt(np.sum(y * y, axis=axis))
    denom = na * nb
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(denom > 0, dot / np.where(denom > 0, denom, 1.0), 0.0)
    cos = np.where((na == 0) & (nb == 0), 1.0, cos)
    return np.clip(cos, -1.0, 1.0)


def top1_agreement(a_logits: np.ndarray, b_logits: np.ndarray) -> float:
    """Fraction of rows whose argmax over the last axis is the same in both arrays."""
    x, y = _pair(a_logits, b_logits)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ConfigError("logits need a non-empty last (class) axis")
    if x.size == 0:
        raise ConfigError("no rows to compare")
    same = np.argmax(x, axis=-1) == np.argmax(y, axis=-1)
    return float(np.mean(same))


def max_abs_error(a: np.ndarray, b: np.ndarray) -> float:
    """Largest ``|a - b|`` (0.0 for empty arrays)."""
    x, y = _pair(a, b)
    return float(np.max(np.abs(x - y), initial=0.0))


def mean_abs_error(a: np.ndarray, b: np.ndarray) -> float:
    """Mean ``|a - b|`` (0.0 for empty arrays)."""
    x, y = _pair(a, b)
    if x.size == 0:
        return 0.0
    return float(np.mean(np.abs(x - y)))


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax in float64 (rows of ``-inf`` only give NaN, as they should)."""
    x = np.asarray(logits, dtype=np.float64)
    if x.ndim == 0:
        raise ConfigError("softmax needs at least a 1-D array")
    shifted = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)


def kl_divergence(reference_logits: np.ndarray, test_logits: np.ndarray, axis: int = -1) -> float:
    """Mean over rows of ``KL(softmax(reference) || softmax(test))`` in nats.

    Probabilities are clipped at 1e-12 inside the logarithm, so a class the test model
    rules out entirely costs a large but finite amount.
    """
    x, y = _pair(reference_logits, test_logits)
    if x.ndim == 0 or x.shape[axis] == 0:
        raise ConfigError("logits need a non-empty class axis")
    p = softmax(x, axis)
    q = softmax(y, axis)
    eps = 1e-12
    kl = np.sum(p * (np.log(np.clip(p, eps, None)) - np.log(np.clip(q, eps, None))), axis=axis)
    return float(np.mean(np.maximum(kl, 0.0)))


def _labels_for(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(logits)
    y = np.asarray(labels)
    if x.ndim < 2 or x.shape[-1] == 0:
        raise ConfigError(f"class scores need a class axis, got shape {x.shape}")
    if y.dtype.kind not in "iub":
        raise ConfigError(f"labels must be integer class indices, got dtype {y.dtype}")
    if y.shape != x.shape[:-1]:
        raise ConfigError(f"labels of shape {y.shape} do not match scores of shape {x.shape}")
    if y.size and (y.min() < 0 or y.max() >= x.shape[-1]):
        raise ConfigError(f"labels must lie in [0, {x.shape[-1] - 1}] for {x.shape[-1]} classes")
    return x, y


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose argmax over the last axis equals the integer label."""
    x, y = _labels_for(logits, labels)
    if y.size == 0:
        raise ConfigError("no rows to score")
    return float(np.mean(np.argmax(x, axis=-1) == y))


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose label is among the ``k`` highest scores (ties: lower index first)."""
    x, y = _labels_for(logits, labels)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= x.shape[-1]:
        raise ConfigError(f"k={k!r} must be an integer between 1 and {x.shape[-1]} (the classes)")
    if y.size == 0:
        raise ConfigError("no rows to score")
    top = np.argsort(-x, axis=-1, kind="stable")[..., :k]
    return float(np.mean(np.any(top == y[..., None], axis=-1)))
