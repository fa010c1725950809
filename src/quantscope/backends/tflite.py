"""The TensorFlow Lite path: converter variants of a Keras model, run by the LiteRT interpreter.

:func:`convert_keras` writes the classic post-training quantization variants with
``tf.lite.TFLiteConverter``:

* ``tflite-dynamic``: dynamic-range quantization (int8 weights, float activations);
* ``tflite-int8``: full integer quantization calibrated on a representative dataset, with float
  inputs and outputs (``tflite-int8-io``: int8 inputs and outputs);
* ``tflite-float16``: float16 weights.

:class:`TFLiteVariant` runs a ``.tflite`` file with ``ai_edge_litert.interpreter.Interpreter``
(not the deprecated ``tf.lite.Interpreter``) over a :class:`~quantscope.data.Dataset` and
times it, so the analysis measures it like an ONNX variant: predictions as NumPy arrays,
size on disk, latency. An int8 input is quantized with the tensor's own scale and zero point,
and an int8 output dequantized, so every variant takes and returns float data.

Running needs only ``ai-edge-litert``; converting needs ``tensorflow``. Both come with the
``[tensorflow]`` extra and are imported when first used.
"""

from __future__ import annotations

import logging
import os
import re
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from quantscope.analysis.evaluate import Latency, time_calls
from quantscope.calibrate import Progress
from quantscope.data import Dataset
from quantscope.errors import ConfigError, ConversionError, ModelError, OutputError, RuntimeFailure
from quantscope.importers.tf_quiet import captured_stderr, import_tensorflow, quiet_tensorflow
from quantscope.io import atomic_write_bytes
from quantscope.specs import TensorSpec

logger = logging.getLogger(__name__)

PREFIX = "tflite-"
VARIANTS: dict[str, str] = {
    "dynamic": "dynamic-range quantization: int8 weights, float activations",
    "int8": "full integer quantization (representative dataset), float inputs and outputs",
    "int8-io": "full integer quantization (representative dataset), int8 inputs and outputs",
    "float16": "float16 weights",
}
DEFAULT_VARIANTS = ("dynamic", "int8", "float16")
_INTEGER_KINDS = "iu"


def _interpreter_class() -> Any:
    quiet_tensorflow()
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise ConfigError(
            "running .tflite models needs ai-edge-litert: pip install 'quantscope[tensorflow]'"
        ) from exc
    return Interpreter


def _natural(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


@dataclass(frozen=True)
class TFLiteVariant:
    """A ``.tflite`` file to run and measure; ``name`` is how reports show it (e.g. ``tflite-int8``)."""

    name: str
    path: Path
    description: str = ""
    signature: str | None = None  # None: the model's only signature

    @property
    def kind(self) -> str:
        return "tflite"

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size

    def _interpreter(self, threads: int | None) -> Any:
        try:
            with captured_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
                interpreter = _interpreter_class()(model_path=str(self.path), num_threads=threads)
                interpreter.allocate_tensors()
            return interpreter
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"the LiteRT interpreter cannot load {self.path}: {exc}") from exc

    def _runner(self, threads: int | None) -> Any:
        interpreter = self._interpreter(threads)
        signatures = interpreter.get_signature_list()
        if not signatures:
            raise ModelError(
                f"{self.path} has no signature; quantscope runs .tflite models through their "
                "signature (convert with TFLiteConverter from a Keras model or SavedModel)"
            )
        key = self.signature or next(iter(signatures))
        if key not in signatures:
            raise ConfigError(f"{self.path} has no signature {key!r}; it has {sorted(signatures)}")
        return interpreter.get_signature_runner(key)

    @cached_property
    def _details(self) -> tuple[dict[str, Any], dict[str, Any]]:
        runner = self._runner(1)
        return dict(runner.get_input_details()), dict(runner.get_output_details())

    @property
    def output_names(self) -> list[str]:
        """Output names in the order :meth:`predict` returns them (``output_0``, ``output_1``, ...)."""
        return sorted(self._details[1], key=_natural)

    @property
    def inputs(self) -> list[TensorSpec]:
        """What the data must provide: float32 where the file takes quantized integers."""
        specs = []
        for name, d in sorted(self._details[0].items(), key=lambda kv: _natural(kv[0])):
            dtype = np.dtype(d["dtype"])
            if _quantized(d):
                dtype = np.dtype(np.float32)
            sig = d.get("shape_signature")
            dims = list(sig) if sig is not None and len(sig) else list(d["shape"])
            shape = tuple(None if int(v) < 0 else int(v) for v in dims)
            if shape:
                shape = ("batch", *shape[1:])
            specs.append(TensorSpec(name, dtype, shape))
        return specs

    @property
    def io_quantization(self) -> dict[str, tuple[float, int]]:
        """(scale, zero point) of every quantized input and output."""
        ins, outs = self._details
        return {name: (float(d["quantization"][0]), int(d["quantization"][1]))
                for name, d in (*ins.items(), *outs.items()) if _quantized(d)}

    def predict(
        self,
        dataset: Dataset,
        *,
        batch_size: int = 32,
        threads: int | None = None,
        progress: Progress | None = None,
    ) -> list[np.ndarray]:
        """All outputs over ``dataset`` (float, dequantized), concatenated along the sample axis."""
        data = dataset.bind(self.inputs)
        runner = self._runner(threads)
        ins, outs = self._details
        names = self.output_names
        chunks: list[list[np.ndarray]] = []
        done, total = 0, len(data)
        for batch in data.batches(batch_size):
            result = _invoke(runner, quantize_inputs(batch.inputs, ins))
            chunks.append([dequantize(np.asarray(result[n]), outs[n]) for n in names])
            done += len(batch.indices)
            if progress is not None:
                progress(done, total)
        return [np.concatenate([c[i] for c in chunks]) for i in range(len(names))]

    def measure_latency(
        self, feeds: Mapping[str, np.ndarray], *, threads: int | None = None, warmup: int = 5, runs: int = 30
    ) -> Latency:
        """Median and p90 wall time of one interpreter call after warm-up (inputs quantized beforehand)."""
        runner = self._runner(threads)
        bound = {spec.name: np.asarray(feeds[spec.name]) for spec in self.inputs if spec.name in feeds}
        if len(bound) != len(self.inputs):
            raise ConfigError(f"feeds {sorted(feeds)} do not cover the inputs {[s.name for s in self.inputs]}")
        q = quantize_inputs(bound, self._details[0])
        batch = int(next(iter(q.values())).shape[0])
        return time_calls(lambda: _invoke(runner, q), batch=batch, threads=threads, warmup=warmup, runs=runs)


def _quantized(detail: Mapping[str, Any]) -> bool:
    scale, _ = detail["quantization"]
    return np.dtype(detail["dtype"]).kind in _INTEGER_KINDS and float(scale) > 0.0


def quantize_inputs(feeds: Mapping[str, np.ndarray], details: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Float data → the dtype each input takes; quantized inputs use the tensor's scale and zero point."""
    out = {}
    for name, array in feeds.items():
        d = details[name]
        dtype = np.dtype(d["dtype"])
        if _quantized(d):
            scale, zero_point = d["quantization"]
            info = np.iinfo(dtype)
            q = np.round(np.asarray(array, dtype=np.float32) / np.float32(scale)) + zero_point
            out[name] = np.clip(q, info.min, info.max).astype(dtype)
        else:
            out[name] = np.ascontiguousarray(array, dtype=dtype)
    return out


def dequantize(array: np.ndarray, detail: Mapping[str, Any]) -> np.ndarray:
    """A quantized output back to float32 with the tensor's scale and zero point; others as is."""
    if not _quantized(detail):
        return array
    scale, zero_point = detail["quantization"]
    return ((array.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)


def _invoke(runner: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    try:
        return runner(**feeds)
    except (ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RuntimeFailure(f"the LiteRT interpreter failed to run the model: {first}") from exc


def load(path: str | os.PathLike[str], name: str | None = None) -> TFLiteVariant:
    """A :class:`TFLiteVariant` for an existing ``.tflite`` file (checked to load)."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"TFLite model not found: {p}")
    variant = TFLiteVariant(name or PREFIX + p.stem, p)
    variant.inputs  # noqa: B018 - load it now, so a bad file fails here
    return variant


# -- conversion --------------------------------------------------------------------------


def convert_keras(
    model: Any,
    out_dir: str | os.PathLike[str],
    *,
    calib: Dataset | None = None,
    variants: Sequence[str] = DEFAULT_VARIANTS,
    num_samples: int = 100,
    seed: int = 0,
    stem: str = "model",
) -> list[TFLiteVariant]:
    """Write the TFLite converter variants of ``model`` to ``out_dir`` (``<stem>.<variant>.tflite``).

    ``model`` is a Keras model, a ``.keras`` file or a SavedModel directory. Full-integer
    variants need ``calib``: ``num_samples`` of it (a seeded subset) are the representative
    dataset. The files are written atomically and each is loaded by the LiteRT interpreter
    before it is returned.
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ConfigError(f"unknown TFLite variant(s) {unknown}; choose from {sorted(VARIANTS)}")
    if len(set(variants)) != len(variants):
        raise ConfigError(f"TFLite variants repeat: {list(variants)}")
    out = Path(out_dir)
    if not out.is_dir():
        raise OutputError(f"output directory {out} does not exist; create it first")
    needs_calib = [v for v in variants if v.startswith("int8")]
    if needs_calib and calib is None:
        raise ConfigError(
            f"the full-integer TFLite variant(s) {needs_calib} need a representative dataset: pass calib= "
            "(from the CLI: --calib calib.npz)"
        )
    tf = import_tensorflow()

    from quantscope.importers.keras import input_specs, quiet

    source = _load_source(model)
    specs = _data_specs(source, input_specs)
    rep = None
    if calib is not None and needs_calib:
        rep = calib.bind(specs).take(min(num_samples, len(calib)), seed=seed)
    written = []
    for variant in variants:
        converter = _converter(tf, source)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if variant.startswith("int8"):
            assert rep is not None
            converter.representative_dataset = _representative(rep, [s.name for s in specs])
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if variant == "int8-io":
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
        elif variant == "float16":
            converter.target_spec.supported_types = [tf.float16]
        start = time.perf_counter()
        try:
            with quiet(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the converter's own use of tf.lite.Interpreter warns
                content = converter.convert()
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConversionError(f"the TFLite converter failed on the {variant} variant: {first}") from exc
        path = atomic_write_bytes(out / f"{stem}.{variant}.tflite", content)
        result = load(path, PREFIX + variant)
        result = TFLiteVariant(result.name, result.path, VARIANTS[variant])
        logger.info("wrote %s (%d bytes) in %.1f s", path, len(content), time.perf_counter() - start)
        written.append(result)
    return written


def _load_source(model: Any) -> Any:
    """A Keras model object, or the path of a SavedModel directory."""
    if isinstance(model, str | os.PathLike):
        p = Path(model)
        if p.is_dir() and (p / "saved_model.pb").is_file():
            return p
        if p.suffix.lower() in (".keras", ".h5") and p.is_file():
            import keras

            from quantscope.importers.keras import quiet

            with quiet():
                return keras.saving.load_model(p)
        raise ConfigError(f"{p} is neither a .keras/.h5 file nor a SavedModel directory")
    if not hasattr(model, "inputs"):
        raise ConfigError(f"the TFLite path converts Keras models, not a {type(model).__name__}")
    return model


def _converter(tf: Any, source: Any) -> Any:
    if isinstance(source, Path):
        return tf.lite.TFLiteConverter.from_saved_model(str(source))
    from quantscope.importers.keras import quiet

    with quiet():  # Keras prints the artifact it exports for the converter
        return tf.lite.TFLiteConverter.from_keras_model(source)


def _data_specs(source: Any, input_specs: Any) -> list[TensorSpec]:
    if isinstance(source, Path):
        tf = import_tensorflow()

        sig = tf.saved_model.load(str(source)).signatures["serving_default"]
        kw = sig.structured_input_signature[1]
        tf_specs = [kw[k] for k in sorted(kw)]
        names = sorted(kw)
    else:
        tf_specs = input_specs(source)
        names = [s.name for s in tf_specs]
    return [
        TensorSpec(n, np.dtype(s.dtype.as_numpy_dtype), ("batch", *[None if d is None else int(d) for d in s.shape[1:]]))
        for n, s in zip(names, tf_specs, strict=True)
    ]


def _representative(data: Dataset, names: list[str]) -> Any:
    def gen() -> Iterator[dict[str, np.ndarray]]:
        for batch in data.batches(1, require_finite=True):
            yield {n: np.ascontiguousarray(batch.inputs[n]) for n in names}

    return gen


# -- measured like ONNX variants ---------------------------------------------------------


def measure(
    variant: TFLiteVariant,
    data: Dataset,
    *,
    reference: Sequence[np.ndarray] | None,
    metric: Any,
    options: Any = None,
) -> tuple[Any, list[np.ndarray]]:
    """One :class:`~quantscope.analysis.results.VariantResult` (kind ``tflite``) and its outputs.

    Quality is computed against ``reference`` (the float ONNX model's outputs on ``data``) with
    the same functions as ONNX variants; latency over the same batch sizes and thread counts
    (``options``: an :class:`~quantscope.analysis.compare.AnalysisOptions`). Peak memory,
    energy and per-layer errors are ONNX Runtime measurements and stay empty here.
    """
    from quantscope.analysis.compare import AnalysisOptions
    from quantscope.analysis.quality import quality
    from quantscope.analysis.results import LatencyResult, VariantResult

    opts = options or AnalysisOptions()
    outputs = variant.predict(data, batch_size=opts.eval_batch_size)
    ref = list(reference) if reference is not None else outputs
    for a, b in zip(ref, outputs, strict=False):
        if a.shape != b.shape:
            raise ModelError(
                f"{variant.name} returns an output of shape {b.shape} where the float model returns {a.shape}; "
                "compare a model only with variants of itself"
            )
    q = quality(ref, outputs, data.labels, metric)
    latency: list[LatencyResult] = []
    if opts.latency:
        for batch_size in sorted(set(opts.batch_sizes)):
            batch = next(iter(data.bind(variant.inputs).batches(batch_size)))
            feeds = {k: np.ascontiguousarray(a) for k, a in batch.inputs.items()}
            for threads in opts.threads:
                lat = variant.measure_latency(
                    feeds, threads=threads, warmup=opts.warmup,
                    runs=opts.runs if batch.size == 1 else max(3, opts.runs // 3),
                )
                latency.append(LatencyResult(batch=batch.size, threads=threads, median_ms=lat.median_ms,
                                             p90_ms=lat.p90_ms, runs=lat.runs))
    result = VariantResult(
        name=variant.name, kind="tflite", path=str(variant.path), method=variant.name, config=None,
        size_bytes=variant.size_bytes, param_bytes={}, quality=q, latency=latency,
        warnings=[f"TFLite converter variant run by the LiteRT interpreter: {variant.description}"]
        if variant.description else [],
    )
    return result, outputs


def add_to_results(
    results: Any,
    float_model: Any,
    variants: Sequence[TFLiteVariant],
    data: Dataset,
    *,
    options: Any = None,
    metric: Any = None,
) -> Any:
    """Add the TFLite ``variants`` to ``results`` (from :func:`quantscope.analyze` on
    ``float_model``), in place, and return it.

    Every variant is measured before any row is added: a failure leaves ``results`` as it was.
    ``data`` is anything :func:`quantscope.data.as_dataset` takes. The float ONNX model's outputs on ``data`` are the reference, so the TFLite rows sit beside
    the ONNX ones in the same report, measured the same way. ``metric`` is needed only when the
    analysis used a metric function (pass the same one); built-in metrics are found by name.
    """
    from quantscope.analysis.evaluate import predict
    from quantscope.analysis.quality import resolve_metric
    from quantscope.data import as_dataset

    data = as_dataset(data, "evaluation data")
    bound = data.bind(float_model.inputs)
    primary = resolve_metric(
        metric if metric is not None else results.metric, has_labels=bound.labels is not None,
        name=results.metric if callable(metric) else None, higher_is_better=results.higher_is_better,
    )
    batch = (options.eval_batch_size if options is not None else 32)
    reference = predict(float_model, bound, batch_size=batch)
    taken = {v.name for v in results.variants}
    rows = []
    for variant in variants:
        if variant.name in taken:
            raise ConfigError(f"the results already have a variant named {variant.name!r}")
        taken.add(variant.name)
        row, _ = measure(variant, data, reference=reference, metric=primary, options=options)
        rows.append(row)
    results.variants.extend(rows)
    return results
