"""Every import is checked: the ONNX model must reproduce the framework's outputs.

The converted model runs in ONNX Runtime on the example inputs and each output is compared
with what the framework computed. Float outputs must satisfy
``|onnx - framework| <= atol + rtol * |framework|`` element-wise; integer and boolean outputs
(class labels, also strings) must be equal. A failure raises :class:`ConversionError` naming the output,
the largest difference, where it is, and the tolerance.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from quantscope.errors import ConversionError, RuntimeFailure
from quantscope.io import Model
from quantscope.runtime import make_session, run

logger = logging.getLogger(__name__)

DEFAULT_RTOL = 1e-3
DEFAULT_ATOL = 1e-4


@dataclass(frozen=True)
class OutputCheck:
    """How one ONNX output compares with the framework's."""

    name: str
    shape: tuple[int, ...]
    max_abs_diff: float
    exact: bool  # integer/boolean output compared for equality

    def describe(self) -> str:
        if self.exact:
            return f"{self.name}: equal"
        return f"{self.name}: max |diff| {self.max_abs_diff:.3g}"


@dataclass(frozen=True)
class ImportCheck:
    """The result of :func:`check_outputs`: every output within tolerance."""

    framework: str
    outputs: tuple[OutputCheck, ...]
    samples: int
    rtol: float
    atol: float

    def describe(self) -> str:
        parts = "; ".join(o.describe() for o in self.outputs)
        return (
            f"ONNX Runtime reproduces {self.framework} on {self.samples} example sample(s) "
            f"(atol {self.atol:g} + rtol {self.rtol:g}·|ref|): {parts}"
        )


def run_onnx(model: Model, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Run ``model`` once in ONNX Runtime; failures become :class:`ConversionError`."""
    try:
        session = make_session(model, optimization="basic")
        return run(session, feeds)
    except RuntimeFailure as exc:
        raise ConversionError(
            f"the converted ONNX model does not run in ONNX Runtime on the example inputs: {exc}"
        ) from exc


def check_outputs(
    model: Model,
    feeds: Mapping[str, np.ndarray],
    expected: Sequence[np.ndarray],
    *,
    framework: str,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
) -> ImportCheck:
    """Run ``model`` on ``feeds`` and compare with ``expected`` (the framework's outputs, in order).

    Raises :class:`ConversionError` when the number of outputs, a shape, or a value differs.
    """
    got = run_onnx(model, feeds)
    names = [spec.name for spec in model.outputs]
    if len(got) != len(expected):
        raise ConversionError(
            f"the ONNX model has {len(got)} output(s) {names} but {framework} returned "
            f"{len(expected)}; the converter changed the model's outputs"
        )
    samples = int(next(iter(feeds.values())).shape[0]) if feeds else 0
    checks = []
    for name, g, e in zip(names, got, expected, strict=True):
        checks.append(compare_one(name, np.asarray(g), np.asarray(e), framework=framework, rtol=rtol, atol=atol))
    result = ImportCheck(framework, tuple(checks), samples, rtol, atol)
    logger.info("%s", result.describe())
    return result


def compare_one(
    name: str, got: np.ndarray, expected: np.ndarray, *, framework: str, rtol: float, atol: float
) -> OutputCheck:
    """Compare one output; raise :class:`ConversionError` with the largest difference if it fails."""
    if got.shape != expected.shape:
        if got.size == expected.size and got.size > 0:
            got = got.reshape(expected.shape)  # e.g. (n,) labels against (n, 1)
        else:
            raise ConversionError(
                f"ONNX output {name!r} has shape {got.shape} but {framework} returned {expected.shape}"
            )
    exact = expected.dtype.kind in "iubOUS"  # labels: integers, booleans, strings
    if exact:
        if got.dtype.kind in "OUS" or expected.dtype.kind in "OUS":
            got, expected = got.astype(str), expected.astype(str)
        bad = got != expected
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ConversionError(
                f"ONNX output {name!r} differs from {framework}'s in {int(bad.sum())} of {bad.size} "
                f"value(s); first at index {idx}: onnx {got[idx]!r}, {framework} {expected[idx]!r}. "
                "The converted model does not compute what the original does"
            )
        return OutputCheck(name, tuple(expected.shape), 0.0, True)
    g = got.astype(np.float64)
    e = expected.astype(np.float64)
    if not np.array_equal(np.isnan(g), np.isnan(e)):
        raise ConversionError(f"ONNX output {name!r} has NaN where {framework}'s has none, or the reverse")
    diff = np.where(np.isnan(e), 0.0, np.abs(g - e))
    max_diff = float(diff.max()) if diff.size else 0.0
    bound = atol + rtol * np.abs(np.nan_to_num(e))
    if (diff > bound).any():
        idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff - bound)), diff.shape))
        raise ConversionError(
            f"ONNX output {name!r} differs from {framework}'s by up to {max_diff:.4g} "
            f"(at index {idx}: onnx {g[idx]:.6g}, {framework} {e[idx]:.6g}); the tolerance is "
            f"atol {atol:g} + rtol {rtol:g}·|{framework}|. The converted model does not compute "
            "what the original does; pass a larger atol=/rtol= only if the difference is expected"
        )
    return OutputCheck(name, tuple(expected.shape), max_diff, False)
