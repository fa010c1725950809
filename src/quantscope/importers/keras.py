"""Keras 3 / TensorFlow → ONNX with tf2onnx: Keras models, ``.keras`` files and SavedModel directories.

tf2onnx 1.17's ``from_keras`` fails on Keras 3 models (``KeyError: 'keras_tensor_…'``), so the
model is wrapped in a ``tf.function`` with an input signature (batch dimension left free) and
converted with ``from_function``, which works for both. Image models stay NHWC, as the
framework takes them: tf2onnx adds the Transposes around the convolutions.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from quantscope.importers.tf_quiet import captured_stderr, import_tensorflow

import_tensorflow()  # first, quietly: TensorFlow's C++ logging starts on import

import tensorflow as tf  # noqa: E402
import tf2onnx  # noqa: E402

from quantscope.errors import ConfigError, ConversionError  # noqa: E402
from quantscope.importers._proto import finalize  # noqa: E402
from quantscope.importers.check import DEFAULT_ATOL, DEFAULT_RTOL, check_outputs  # noqa: E402
from quantscope.io import Model  # noqa: E402

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 17
RANDOM_EXAMPLES = 4


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Keras and the TFLite converter print to stdout, TensorFlow's C++ side to stderr; library
    code must not: both go to the log."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), captured_stderr():
        yield
    if sink.getvalue().strip():
        logger.debug("tensorflow said: %s", sink.getvalue().strip()[:2000])


def input_specs(model: Any) -> list[tf.TensorSpec]:
    """The model's inputs as TensorSpecs with a free batch dimension, named as Keras names them."""
    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise ConfigError(
            "the Keras model has no defined inputs (a subclassed model that was never called, or a "
            "Sequential without an Input layer); build it, e.g. call it once on example data"
        )
    specs = []
    for i, t in enumerate(inputs):
        shape = list(t.shape)
        name = getattr(t, "name", None) or f"input_{i}"
        name = name.split(":")[0]
        specs.append(tf.TensorSpec([None, *shape[1:]], tf.as_dtype(t.dtype), name=name))
    return specs


def free_axes(specs: list[tf.TensorSpec], dynamic: Mapping[str | int, Sequence[int]] | None) -> list[tf.TensorSpec]:
    """``specs`` with the axes named in ``dynamic`` (by input name or position) left free (None)."""
    if not dynamic:
        return specs
    names = [s.name for s in specs]
    free: dict[int, set[int]] = {}
    for key, dims in dynamic.items():
        index = names.index(str(key)) if str(key) in names else int(key) if str(key).isdigit() else -1
        if not 0 <= index < len(specs):
            raise ConfigError(f"dynamic axes for {key!r}: the model's inputs are {names} (or their positions)")
        rank = len(specs[index].shape)
        bad = [d for d in dims if not 1 <= d < rank]
        if bad:
            raise ConfigError(f"dynamic axis {bad[0]} of {names[index]!r}: it has axes 0..{rank - 1}, and axis 0 "
                              "(the batch) is free already")
        free.setdefault(index, set()).update(dims)
    return [
        tf.TensorSpec([None if i in free.get(k, ()) else d for i, d in enumerate(s.shape)], s.dtype, name=s.name)
        for k, s in enumerate(specs)
    ]


def output_names(model: Any, n: int) -> list[str]:
    names = list(getattr(model, "output_names", None) or [])
    if len(names) == n and len(set(names)) == n and all(isinstance(s, str) and s for s in names):
        return names
    return ["output"] if n == 1 else [f"output_{i}" for i in range(n)]


def example_arrays(specs: Sequence[tf.TensorSpec], example_inputs: Any, seed: int = 0) -> tuple[list[np.ndarray], bool]:
    """Example inputs as arrays in the specs' order; seeded random ones when none are given."""
    if example_inputs is None:
        rng = np.random.default_rng(seed)
        arrays = []
        for spec in specs:
            dims = [RANDOM_EXAMPLES, *spec.shape[1:]]
            if any(d is None for d in dims):
                raise ConfigError(
                    f"input {spec.name!r} has an unknown dimension {list(spec.shape)}; pass example inputs"
                )
            dtype = spec.dtype.as_numpy_dtype
            if np.issubdtype(dtype, np.floating):
                arrays.append(rng.standard_normal(dims).astype(dtype))
            else:
                arrays.append(rng.integers(0, 2, dims).astype(dtype))
        return arrays, True
    if isinstance(example_inputs, Mapping):
        missing = [s.name for s in specs if s.name not in example_inputs]
        if missing:
            raise ConfigError(f"example inputs lack {missing}; the model takes {[s.name for s in specs]}")
        values = [example_inputs[s.name] for s in specs]
    elif isinstance(example_inputs, list | tuple):
        values = list(example_inputs)
    else:
        values = [example_inputs]
    if len(values) != len(specs):
        raise ConfigError(f"{len(values)} example input(s) given; the model takes {len(specs)}: {[s.name for s in specs]}")
    arrays = []
    for spec, v in zip(specs, values, strict=True):
        a = np.asarray(v.numpy() if hasattr(v, "numpy") else v)
        want = np.dtype(spec.dtype.as_numpy_dtype)
        if a.dtype != want:
            a = a.astype(want)
        arrays.append(a)
    return arrays, False


def convert(
    model: Any,
    example_inputs: Any = None,
    *,
    opset: int = DEFAULT_OPSET,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    source: str | None = None,
    dynamic: Mapping[str | int, Sequence[int]] | None = None,
) -> Model:
    """Convert a Keras model; ``example_inputs`` (batch first) default to seeded random data.

    ``dynamic`` frees more axes than the batch in the input signature, per input name or
    position, e.g. ``{"tokens": [1]}`` for the sequence length.
    """
    if not hasattr(model, "inputs") or not callable(model):
        raise ConfigError(f"the keras importer converts a Keras model, not a {type(model).__name__}")
    specs = free_axes(input_specs(model), dynamic)
    arrays, random = example_arrays(specs, example_inputs)

    def call(*args: tf.Tensor) -> list[tf.Tensor]:
        out = model(args[0] if len(args) == 1 else list(args), training=False)
        return tf.nest.flatten(out)

    fn = tf.function(call, input_signature=specs)
    with quiet():
        expected = [np.asarray(t) for t in call(*[tf.constant(a) for a in arrays])]
    names = output_names(model, len(expected))
    model_name = str(getattr(model, "name", "") or type(model).__name__)
    what = source or f"Keras model {model_name!r}"
    return _convert_function(fn, specs, arrays, expected, names, what, random, opset, rtol, atol, model_name)


def convert_file(path: str | os.PathLike[str], example_inputs: Any = None, *, trust: bool = False, **kwargs: Any) -> Model:
    """Load a ``.keras``/``.h5`` file (Keras safe mode unless ``trust``) and convert it."""
    import keras

    p = Path(path)
    try:
        with quiet():
            model = keras.saving.load_model(p, safe_mode=not trust)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = (
            "; it holds code (a Lambda layer or custom object): pass trust=True (--trust) if you trust its source"
            if "safe_mode" in str(exc) else ""
        )
        raise ConversionError(f"cannot load the Keras model {p}: {type(exc).__name__}: {first}{hint}") from exc
    return convert(model, example_inputs, source=f"Keras file {p.name}", **kwargs)


def convert_saved_model(
    path: str | os.PathLike[str],
    example_inputs: Any = None,
    *,
    signature: str = "serving_default",
    opset: int = DEFAULT_OPSET,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
) -> Model:
    """Convert one signature of a TensorFlow SavedModel directory (outputs in sorted key order)."""
    p = Path(path)
    try:
        loaded = tf.saved_model.load(str(p))
    except Exception as exc:
        raise ConversionError(f"cannot load the SavedModel {p}: {type(exc).__name__}: {exc}") from exc
    if signature not in loaded.signatures:
        raise ConfigError(f"the SavedModel {p} has no signature {signature!r}; it has {sorted(loaded.signatures)}")
    sig = loaded.signatures[signature]
    kw_specs = sig.structured_input_signature[1]
    in_names = sorted(kw_specs)
    specs = [tf.TensorSpec(kw_specs[k].shape, kw_specs[k].dtype, name=k) for k in in_names]
    out_names = sorted(sig.structured_outputs)
    arrays, random = example_arrays(specs, example_inputs)

    def call(*args: tf.Tensor) -> list[tf.Tensor]:
        out = sig(**dict(zip(in_names, args, strict=True)))
        return [out[k] for k in out_names]

    fn = tf.function(call, input_signature=specs)
    expected = [np.asarray(t) for t in call(*[tf.constant(a) for a in arrays])]
    what = f"SavedModel {p.name} ({signature})"
    return _convert_function(fn, specs, arrays, expected, out_names, what, random, opset, rtol, atol, p.name)


def _convert_function(
    fn: Any,
    specs: Sequence[tf.TensorSpec],
    arrays: Sequence[np.ndarray],
    expected: Sequence[np.ndarray],
    names: Sequence[str],
    what: str,
    random: bool,
    opset: int,
    rtol: float,
    atol: float,
    name: str,
) -> Model:
    try:
        with quiet():
            proto, _ = tf2onnx.convert.from_function(fn, input_signature=list(specs), opset=opset)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConversionError(f"tf2onnx cannot convert the {what}: {type(exc).__name__}: {first}") from exc
    notes = [
        f"imported from the {what} with tf2onnx {tf2onnx.__version__} (tensorflow {tf.__version__}, "
        f"opset {opset}, from_function)"
    ]
    model = finalize(proto, notes=notes, output_names=names, name=name)
    onnx_names = [s.name for s in model.inputs]
    if len(onnx_names) != len(arrays):
        raise ConversionError(f"the ONNX model takes inputs {onnx_names}, the framework {[s.name for s in specs]}")
    by_name = {s.name: a for s, a in zip(specs, arrays, strict=True)}
    feeds = {n: by_name.get(n.split(":")[0], a) for n, a in zip(onnx_names, arrays, strict=True)}
    check = check_outputs(model, feeds, expected, framework="tensorflow", rtol=rtol, atol=atol)
    on = " (seeded random example inputs: pass real ones for a stronger check)" if random else ""
    return Model(ir=model.ir, fingerprint=model.fingerprint, notes=(*model.notes, check.describe() + on))
