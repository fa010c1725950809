"""Results of analysis: plain frozen dataclasses that round-trip through a tagged, versioned dict.

Every analysis (``analyze``, ``sweep``, ``robustness``) returns a :class:`Results`; every renderer
(terminal, markdown, HTML) reads only a :class:`Results`. ``results.json`` is
``Results.to_dict()``; its schema is documented field by field below and versioned by
``SCHEMA_VERSION`` (a reader refuses a newer version instead of misreading it, and migrates an
older one: see :data:`MIGRATIONS`).

Version history: 1, the first; 2, ``param_bytes`` keys are always NumPy dtype names
(``float32``; version 1 files written by the CLI could hold ONNX names such as ``float``), and
``objective`` records what the recommended variant was chosen for (``"size"`` or ``"latency"``);
3, latency measured as a paired, interleaved comparison against the float model
(``LatencyResult.speed``, ``speed_low``, ``speed_high``: float time / variant time and its 95 %
interval), ``VariantResult.quality_interval`` (95 % interval of each metric that has one), and
``Results.outputs`` (the model outputs the quality metrics were computed on), and ``module``
(the module path from the node's metadata) on per-layer errors and sensitivities. A version-2 file
reads as version 3 with no intervals and the first output; 4, ``VariantResult.measured_on``: the
worker whose CPU timed the variant's latency (its ``MachineFacts.to_dict()``: host, CPU model,
features, usable CPUs, thread limits); None when it was timed in the analyzing process, which
``Results.machine`` describes. A version-3 file reads as version 4 with ``measured_on`` None.

Quality metrics are keyed by name in ``quality`` dicts. Names used by the built-in analyses:

* against labels: ``accuracy``, ``top5`` (when there are ≥ 5 classes);
* fidelity against the float model: ``agreement`` (top-1), ``cosine`` (mean over samples),
  ``cosine_min``, ``sqnr_db``, ``max_abs``, ``mean_abs``, ``kl`` (of softmax outputs);
* a user-supplied metric appears under the name it was given.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from quantscope.analysis.budget import fits, quality_drop
from quantscope.errors import ConfigError

SCHEMA = "quantscope.results"
SCHEMA_VERSION = 4

VariantKind = Literal["float", "onnx", "tflite", "openvino"]


@dataclass(frozen=True, kw_only=True)
class LatencyResult:
    """Wall time of one inference call, after warm-up, with identical session options per variant."""

    batch: int
    threads: int | None  # None: the runtime's default (all cores)
    median_ms: float
    p90_ms: float
    runs: int
    # paired against the float model (same batch, threads, interleaved rounds): float time / this
    # variant's time, and its 95 % bootstrap interval; None for the float model itself or when not paired
    speed: float | None = None
    speed_low: float | None = None
    speed_high: float | None = None


@dataclass(frozen=True, kw_only=True)
class MemoryResult:
    """Peak resident memory of a fresh process that loads the model and runs it (MiB)."""

    peak_rss_mb: float  # whole process, after load + inference
    baseline_rss_mb: float  # the same process before loading the model
    batch: int

    @property
    def model_rss_mb(self) -> float:
        return self.peak_rss_mb - self.baseline_rss_mb


@dataclass(frozen=True, kw_only=True)
class EnergyResult:
    """Estimated energy of one inference (one sample), from op counts and bytes moved."""

    total_uj: float
    by_component: dict[str, float]  # e.g. {"int8 mul": .., "fp32 add": .., "DRAM": ..} in µJ
    ops: dict[str, float]  # operation counts by kind, e.g. {"int8 mac": 3.1e7}
    table: str  # name of the per-operation energy table used, e.g. "horowitz-2014-45nm"


@dataclass(frozen=True, kw_only=True)
class LayerError:
    """SQNR of one tensor of a quantized model against the float model's tensor of the same name."""

    tensor: str
    node: str
    op_type: str
    sqnr_db: float
    module: str = ""  # the node's module path from the exporter's metadata (e.g. "encoder.layer.0/linear")


@dataclass(frozen=True, kw_only=True)
class LayerSensitivity:
    """Quality when only this node is quantized (``mode="only"``) or all but it (``"all-but"``)."""

    node: str
    op_type: str
    mode: Literal["only", "all-but"]
    metric: str
    value: float
    delta: float  # value minus the reference (float model for "only", fully quantized for "all-but")
    module: str = ""  # the node's module path from the exporter's metadata


@dataclass(frozen=True, kw_only=True)
class PlanSummary:
    """What a variant's quantization did, from its plan (sidecar JSON)."""

    method: str
    quantized: int
    fused: int
    float: int
    float_reasons: dict[str, int]  # reason -> number of nodes left float for it
    quantized_ops: dict[str, int]  # op type -> number of quantized nodes
    runtime_ops: dict[str, int] = field(default_factory=dict)  # ORT's optimized-graph histogram
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class VariantResult:
    """Everything measured for one model variant (the float model is a variant too)."""

    name: str
    kind: VariantKind
    path: str | None
    method: str | None  # None for the float model
    config: dict[str, Any] | None  # the method config's tagged dict
    size_bytes: int  # on disk, external data included
    param_bytes: dict[str, int]  # initializer bytes by NumPy dtype name ("float32", "int8", ...)
    quality: dict[str, float]
    quality_interval: dict[str, list[float]] = field(default_factory=dict)  # metric -> [low, high], 95 %
    latency: list[LatencyResult] = field(default_factory=list)
    memory: MemoryResult | None = None
    energy: EnergyResult | None = None
    plan: PlanSummary | None = None
    layers: list[LayerError] = field(default_factory=list)
    sensitivity: list[LayerSensitivity] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # the worker that timed ``latency`` (MachineFacts.to_dict()); None: the analyzing process
    measured_on: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class ShiftPoint:
    """Quality of one variant on the evaluation data under one shift at one severity."""

    shift: str  # e.g. "brightness", "gaussian_noise", "length"
    severity: float  # 0 = unshifted
    variant: str
    quality: dict[str, float]
    description: str = ""  # e.g. "brightness ×0.3"


@dataclass(frozen=True, kw_only=True)
class SliceResult:
    """Quality of one variant on one slice of the data (a class, or a metadata value)."""

    slice: str  # e.g. "label=3", "camera=b"
    variant: str
    samples: int
    quality: dict[str, float]


@dataclass(frozen=True, kw_only=True)
class CalibrationEffect:
    """static-int8 calibrated on each source distribution, evaluated on each target distribution."""

    sources: list[str]
    targets: list[str]
    metric: str
    values: list[list[float]]  # values[i][j]: calibrated on sources[i], evaluated on targets[j]
    float_values: list[float]  # the float model on each target


@dataclass(frozen=True, kw_only=True)
class CalibrationSizePoint:
    samples: int
    quality: dict[str, float]


@dataclass(frozen=True, kw_only=True)
class RobustnessResult:
    metric: str
    threshold: float | None  # the quality below which a variant counts as broken
    shifts: list[ShiftPoint] = field(default_factory=list)
    breaking_points: dict[str, dict[str, float | None]] = field(default_factory=dict)
    # shift -> variant -> the lowest severity at which quality falls below threshold (None: never)
    slices: list[SliceResult] = field(default_factory=list)
    calibration_effect: CalibrationEffect | None = None
    calibration_size: list[CalibrationSizePoint] = field(default_factory=list)
    limitations: list[str] = field(default_factory=list)  # plain sentences, most severe first
    samples: int | None = None  # evaluation samples behind every shift point (for noise margins)


@dataclass(frozen=True, kw_only=True)
class Results:
    """One analysis run: the model, the data, every variant, optional robustness."""

    model: dict[str, Any]  # {"name", "path", "fingerprint", "inputs", "outputs"}
    data: dict[str, Any]  # {"name", "samples", "labels": bool}
    metric: str  # the primary quality metric, a key of every variant's ``quality``
    higher_is_better: bool = True
    variants: list[VariantResult] = field(default_factory=list)
    robustness: RobustnessResult | None = None
    max_drop: float | None = None  # the quality budget, as a fraction of the float value
    objective: str = "size"  # what the recommended variant is chosen for: "size" or "latency"
    outputs: list[str] = field(default_factory=list)  # the outputs quality was computed on ([]: the first)
    machine: dict[str, Any] = field(default_factory=dict)  # cpu, cores, flags, library versions, threads
    created: str = ""  # ISO 8601
    notes: list[str] = field(default_factory=list)

    # --- queries -------------------------------------------------------------------------

    def _repr_html_(self) -> str:
        """The report's tables and plots, inline in a notebook (self-contained, escaped)."""
        from quantscope.reporting.notebook import results_html

        return results_html(self)

    def variant(self, name: str) -> VariantResult:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"no variant named {name!r}; have {[v.name for v in self.variants]}")

    @property
    def reference(self) -> VariantResult | None:
        """The float model, when it was measured."""
        return next((v for v in self.variants if v.kind == "float"), None)

    def drop(self, variant: VariantResult) -> float | None:
        """Quality lost against the float model (positive = worse), in the metric's units."""
        ref = self.reference
        if ref is None or self.metric not in ref.quality or self.metric not in variant.quality:
            return None
        return quality_drop(ref.quality[self.metric], variant.quality[self.metric], self.higher_is_better)

    def within_budget(self, max_drop: float) -> list[VariantResult]:
        """Quantized variants whose drop is at most ``max_drop`` (absolute, metric units).

        For the budget as a fraction of the float value, see :mod:`quantscope.analysis.budget`.
        """
        return [v for v in self.variants if v.kind != "float" and fits(self.drop(v), max_drop)]

    # --- serialization ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **_to_plain(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Results:
        if d.get("schema") != SCHEMA:
            raise ConfigError(f"not a quantscope results file (schema {d.get('schema')!r})")
        version = d.get("schema_version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ConfigError(f"results schema version {version!r} is not a version quantscope ever wrote")
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"results schema version {version!r} is newer than this quantscope reads "
                f"({SCHEMA_VERSION}); upgrade quantscope"
            )
        body = {k: v for k, v in d.items() if k not in ("schema", "schema_version")}
        for old in range(version, SCHEMA_VERSION):
            body = MIGRATIONS[old](body)
        return _from_plain(cls, body)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``results.json`` atomically (staged beside it, see :mod:`quantscope.transaction`)."""
        from quantscope.transaction import write_files

        path = Path(path)
        write_files(path.parent, {path.name: (json.dumps(self.to_dict(), indent=2, allow_nan=True) + "\n").encode()})
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Results:
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"cannot read results file {path}: {e}") from e
        return cls.from_dict(d)


def _v1_to_v2(body: dict[str, Any]) -> dict[str, Any]:
    """``param_bytes`` keys in NumPy style (``float`` -> ``float32``); ``objective`` defaults to size."""
    from quantscope.analysis.params import numpy_name_of

    variants = []
    for v in body.get("variants") or []:
        if isinstance(v, dict) and isinstance(v.get("param_bytes"), dict):
            merged: dict[str, int] = {}
            for key, n in v["param_bytes"].items():
                merged[numpy_name_of(key)] = merged.get(numpy_name_of(key), 0) + n
            v = {**v, "param_bytes": merged}
        variants.append(v)
    return {**body, "variants": variants, "objective": body.get("objective", "size")}


def _v2_to_v3(body: dict[str, Any]) -> dict[str, Any]:
    """No intervals were measured; quality was computed on the first output."""
    first = [o["name"] for o in (body.get("model") or {}).get("outputs", [])[:1] if isinstance(o, dict) and "name" in o]
    return {**body, "outputs": body.get("outputs", first)}


def _v3_to_v4(body: dict[str, Any]) -> dict[str, Any]:
    """Every latency was timed in the analyzing process (``Results.machine``)."""
    variants = [{**v, "measured_on": None} if isinstance(v, dict) else v for v in body.get("variants") or []]
    return {**body, "variants": variants}


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4}
"""``MIGRATIONS[n]`` turns the body of a version-``n`` file into version ``n + 1``."""


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_to_plain(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    return obj


def _from_plain(tp: Any, value: Any) -> Any:
    """Rebuild ``value`` as type ``tp`` (dataclasses, lists, dicts, optionals of them)."""
    if value is None:
        return None
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        kwargs = {k: _from_plain(hints[k], v) for k, v in value.items() if k in names}
        return tp(**kwargs)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            if arg is type(None):
                continue
            if dataclasses.is_dataclass(arg) and isinstance(value, dict):
                return _from_plain(arg, value)
        non_none = [a for a in args if a is not type(None)]
        return _from_plain(non_none[0], value) if len(non_none) == 1 else value
    if origin is list:
        return [_from_plain(args[0], v) for v in value] if args else list(value)
    if origin is dict:
        return {k: _from_plain(args[1], v) for k, v in value.items()} if args else dict(value)
    return value
