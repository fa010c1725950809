"""Frozen, keyword-only method configurations and node selectors.

Every config validates on construction (a bad value fails at the line that made it) and
round-trips through a tagged, versioned dict shared by the Python API and the CLI.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from quantscope.errors import ConfigError, SelectorError

SCHEMA_VERSION = 1

CALIBRATION_METHODS = ("minmax", "percentile", "entropy", "mse")
ACTIVATION_DTYPES = ("uint8", "int8")

_CONFIG_TYPES: dict[str, type[MethodConfig]] = {}


@dataclass(frozen=True, kw_only=True)
class NodeSelector:
    """Nodes to leave in float, by exact name, regular expression on the name, or op type.

    Every rule must match at least one node of the model it is applied to
    (:meth:`resolve` raises :class:`SelectorError` otherwise), so a typo cannot silently
    leave the model untouched.
    """

    names: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    op_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for attr in ("names", "patterns", "op_types"):
            value = getattr(self, attr)
            if isinstance(value, str):
                raise ConfigError(f"NodeSelector.{attr} must be a sequence of strings, not one string {value!r}")
            object.__setattr__(self, attr, tuple(value))
        for p in self.patterns:
            try:
                re.compile(p)
            except re.error as exc:
                raise ConfigError(f"invalid regular expression {p!r} in node selector: {exc}") from exc

    def __bool__(self) -> bool:
        return bool(self.names or self.patterns or self.op_types)

    def resolve(self, nodes: Iterable[tuple[str, str]]) -> dict[str, str]:
        """Map node name → the rule that selected it, for ``(name, op_type)`` pairs.

        Raises :class:`SelectorError` for any rule that matches nothing.
        """
        nodes = list(nodes)
        selected: dict[str, str] = {}
        unmatched: list[str] = []
        names = {n for n, _ in nodes}
        for name in self.names:
            if name in names:
                selected.setdefault(name, f"name {name!r}")
            else:
                unmatched.append(f"name {name!r}")
        for pattern in self.patterns:
            rx = re.compile(pattern)
            hits = [n for n, _ in nodes if rx.search(n)]
            if not hits:
                unmatched.append(f"pattern {pattern!r}")
            for n in hits:
                selected.setdefault(n, f"pattern {pattern!r}")
        for op in self.op_types:
            hits = [n for n, t in nodes if t == op]
            if not hits:
                unmatched.append(f"op type {op!r}")
            for n in hits:
                selected.setdefault(n, f"op type {op!r}")
        if unmatched:
            present = sorted({t for _, t in nodes})
            raise SelectorError(
                "exclusion rule(s) matched no node: "
                + ", ".join(unmatched)
                + f". The model's op types are: {', '.join(present)}; "
                "check spelling or use `quantscope inspect` to list node names."
            )
        return selected

    def to_dict(self) -> dict[str, list[str]]:
        return {"names": list(self.names), "patterns": list(self.patterns), "op_types": list(self.op_types)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NodeSelector:
        unknown = set(d) - {"names", "patterns", "op_types"}
        if unknown:
            raise ConfigError(f"unknown node selector key(s): {', '.join(sorted(unknown))}")
        return cls(**{k: tuple(v) for k, v in d.items()})


@dataclass(frozen=True, kw_only=True)
class MethodConfig:
    """Base of every method config: a registered ``method`` tag and node exclusion."""

    method: ClassVar[str] = ""
    needs_calibration: ClassVar[bool] = False
    exclude: NodeSelector = field(default_factory=NodeSelector)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.method:
            _CONFIG_TYPES[cls.method] = cls

    def __post_init__(self) -> None:
        if isinstance(self.exclude, Mapping):
            object.__setattr__(self, "exclude", NodeSelector.from_dict(self.exclude))
        if not isinstance(self.exclude, NodeSelector):
            raise ConfigError("exclude must be a NodeSelector")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "schema_version": SCHEMA_VERSION}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if isinstance(value, NodeSelector) else value
        return out


def config_from_dict(d: Mapping[str, Any]) -> MethodConfig:
    """Rebuild a config from :meth:`MethodConfig.to_dict` output (or a CLI config file)."""
    d = dict(d)
    method = d.pop("method", None)
    version = d.pop("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise ConfigError(f"config schema version {version} is not supported (this quantscope reads {SCHEMA_VERSION})")
    cls = _CONFIG_TYPES.get(str(method))
    if cls is None:
        raise ConfigError(f"unknown method {method!r}; choose one of: {', '.join(sorted(_CONFIG_TYPES))}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ConfigError(f"unknown option(s) for {method}: {', '.join(sorted(unknown))}; valid: {', '.join(sorted(names))}")
    return cls(**d)


def method_names() -> list[str]:
    return sorted(_CONFIG_TYPES)


def config_class(method: str) -> type[MethodConfig]:
    try:
        return _CONFIG_TYPES[method]
    except KeyError:
        raise ConfigError(f"unknown method {method!r}; choose one of: {', '.join(sorted(_CONFIG_TYPES))}") from None


def _check_choice(name: str, value: object, choices: Iterable[object]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not valid; choose one of: {', '.join(map(str, choices))}")


def _check_int(name: str, value: object, lo: int, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
        raise ConfigError(f"{name}={value!r} is not valid; it must be an integer {bound}")


@dataclass(frozen=True, kw_only=True)
class StaticInt8(MethodConfig):
    """Full-integer int8: weights int8 symmetric (per-channel), activations 8-bit from calibration.

    ``activation_dtype="uint8"`` (U8S8) is the fast format on x86 CPUs without VNNI;
    ``reduce_range=None`` (auto) stores 7-bit weights when this machine's CPU is x86 without
    VNNI: ONNX Runtime's U8S8 kernels there sum pairs of u8×s8 products in int16, which
    saturates with full 8-bit weights (measured: 100 % → 94.5 % on the bundled CNN).
    ``integer_io`` makes the model take and return quantized tensors (for integer-only
    hardware); the scales and zero points are written into the model's metadata.
    """

    method: ClassVar[str] = "static-int8"
    needs_calibration: ClassVar[bool] = True

    calibration: str = "minmax"
    percentile: float = 99.99
    num_samples: int = 256
    batch_size: int = 16
    per_channel: bool = True
    activation_dtype: str = "uint8"
    reduce_range: bool | None = None
    integer_io: bool = False
    quantize_activation_matmul: bool = True
    bins: int = 2048
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_choice("calibration", self.calibration, CALIBRATION_METHODS)
        _check_choice("activation_dtype", self.activation_dtype, ACTIVATION_DTYPES)
        if isinstance(self.percentile, bool) or not isinstance(self.percentile, int | float) or not 50.0 < self.percentile <= 100.0:
            raise ConfigError(f"percentile={self.percentile!r} is not valid; it must be a number in (50, 100]")
        _check_int("num_samples", self.num_samples, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("bins", self.bins, 128, 1 << 16)
        _check_int("seed", self.seed, 0)
        if self.reduce_range is not None and not isinstance(self.reduce_range, bool):
            raise ConfigError(f"reduce_range must be True, False or None (auto), not {self.reduce_range!r}")
        for flag in ("per_channel", "integer_io", "quantize_activation_matmul"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"{flag} must be True or False, not {getattr(self, flag)!r}")


WEIGHT_OP_TYPES = ("MatMul", "Gemm", "Conv")


def _check_ops(name: str, ops: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    if isinstance(ops, str):
        raise ConfigError(f"{name} must be a sequence of op types, not one string {ops!r}")
    bad = [op for op in ops if op not in allowed]
    if bad or not ops:
        raise ConfigError(f"{name}={tuple(ops)!r} is not valid; choose among: {', '.join(allowed)}")


def _check_min_size(value: object) -> None:
    _check_int("min_size", value, 0)


@dataclass(frozen=True, kw_only=True)
class DynamicInt8(MethodConfig):
    """Dynamic-range int8: weights int8 ahead of time, activations quantized at run time.

    ``op_types`` defaults to MatMul, Gemm and Gather (embedding tables stored int8 per row):
    dynamic Conv (ConvInteger) runs 2-10x slower than float on x86 without VNNI; add "Conv"
    only for a target where it pays.
    """

    method: ClassVar[str] = "dynamic-int8"

    op_types: tuple[str, ...] = ("MatMul", "Gemm", "Gather")
    per_channel: bool = True
    reduce_range: bool | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "op_types", tuple(self.op_types))
        _check_ops("op_types", self.op_types, (*WEIGHT_OP_TYPES, "Gather"))
        if self.reduce_range is not None and not isinstance(self.reduce_range, bool):
            raise ConfigError(f"reduce_range must be True, False or None (auto), not {self.reduce_range!r}")
        if not isinstance(self.per_channel, bool):
            raise ConfigError(f"per_channel must be True or False, not {self.per_channel!r}")


# Kept float32 by float16 (reasons in quantscope.methods.float16.BLOCK_REASONS): coordinate maths
# (Resize, Upsample, GridSample, RoiAlign), ranking (TopK), accumulations that overflow 65504
# (CumSum, ReduceProd, ReduceSumSquare, ReduceL2, ReduceLogSumExp), and ops ONNX Runtime 1.32's
# CPU provider refuses to load in float16 (RandomNormal, RandomUniform, EyeLike). Ops whose ONNX
# schema forbids float16 (Range, NonMaxSuppression, Celu, ...) stay float32 without being listed.
FLOAT16_BLOCK_OPS = (
    "Resize", "Upsample", "GridSample", "RoiAlign", "TopK", "CumSum", "ReduceProd",
    "ReduceSumSquare", "ReduceL2", "ReduceLogSumExp", "RandomNormal", "RandomUniform", "EyeLike",
)


@dataclass(frozen=True, kw_only=True)
class Float16(MethodConfig):
    """float16 weights and compute with float32 inputs/outputs (Casts at the boundary).

    ``weights_only`` stores float16 weights and computes in float32 (a Cast after each
    weight, folded by ONNX Runtime at load: only the file shrinks); ``block_ops`` stay
    float32 between Casts (known accuracy loss, or no float16 CPU kernel).
    """

    method: ClassVar[str] = "float16"

    weights_only: bool = False
    block_ops: tuple[str, ...] = FLOAT16_BLOCK_OPS

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.block_ops, str) or not all(isinstance(op, str) for op in self.block_ops):
            raise ConfigError(f"block_ops must be a sequence of op type names, not {self.block_ops!r}")
        object.__setattr__(self, "block_ops", tuple(self.block_ops))
        if not isinstance(self.weights_only, bool):
            raise ConfigError(f"weights_only must be True or False, not {self.weights_only!r}")


@dataclass(frozen=True, kw_only=True)
class _WeightOnly(MethodConfig):
    """Weight-only block-wise quantization of MatMul/Gemm weights (activations stay float)."""

    bits: ClassVar[int] = 8
    block_size: int = 32
    symmetric: bool = True
    format: str = "auto"  # "auto" | "matmulnbits" | "qdq"
    algorithm: str = "rtn"  # "rtn" (round to nearest) | "hqq" (half-quadratic solver)
    min_size: int = 1024

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_choice("block_size", self.block_size, (16, 32, 64, 128, 256))
        _check_choice("format", self.format, ("auto", "matmulnbits", "qdq"))
        _check_choice("algorithm", self.algorithm, ("rtn", "hqq"))
        _check_min_size(self.min_size)
        if not isinstance(self.symmetric, bool):
            raise ConfigError(f"symmetric must be True or False, not {self.symmetric!r}")


@dataclass(frozen=True, kw_only=True)
class WeightInt8(_WeightOnly):
    method: ClassVar[str] = "weight-int8"
    bits: ClassVar[int] = 8


@dataclass(frozen=True, kw_only=True)
class WeightInt4(_WeightOnly):
    method: ClassVar[str] = "weight-int4"
    bits: ClassVar[int] = 4


@dataclass(frozen=True, kw_only=True)
class Cluster(MethodConfig):
    """Weight clustering: seeded k-means codebook of 2**bits centroids per tensor (or channel).

    Stored as packed ``bits``-bit indices plus the codebook; graph ops expand them at load.
    """

    method: ClassVar[str] = "cluster"

    bits: int = 4
    per_channel: bool = False
    op_types: tuple[str, ...] = WEIGHT_OP_TYPES
    iterations: int = 25
    seed: int = 0
    min_size: int = 1024

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_int("bits", self.bits, 2, 8)
        _check_int("iterations", self.iterations, 1, 1000)
        _check_int("seed", self.seed, 0)
        _check_min_size(self.min_size)
        object.__setattr__(self, "op_types", tuple(self.op_types))
        _check_ops("op_types", self.op_types, WEIGHT_OP_TYPES)


@dataclass(frozen=True, kw_only=True)
class Ternary(MethodConfig):
    """Ternary weights {-a, 0, +a} per output channel (threshold = ``threshold`` * mean|w|), 2-bit packed."""

    method: ClassVar[str] = "ternary"

    threshold: float = 0.7
    op_types: tuple[str, ...] = WEIGHT_OP_TYPES
    min_size: int = 1024

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int | float) or not 0 < self.threshold < 2:
            raise ConfigError(f"threshold={self.threshold!r} is not valid; it must be a number in (0, 2)")
        _check_min_size(self.min_size)
        object.__setattr__(self, "op_types", tuple(self.op_types))
        _check_ops("op_types", self.op_types, WEIGHT_OP_TYPES)


@dataclass(frozen=True, kw_only=True)
class Binary(MethodConfig):
    """Binary weights +-a per output channel (a = mean|w|, XNOR-Net scaling), 1-bit packed."""

    method: ClassVar[str] = "binary"

    op_types: tuple[str, ...] = WEIGHT_OP_TYPES
    min_size: int = 1024

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_min_size(self.min_size)
        object.__setattr__(self, "op_types", tuple(self.op_types))
        _check_ops("op_types", self.op_types, WEIGHT_OP_TYPES)
