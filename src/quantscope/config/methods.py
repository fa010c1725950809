"""The config of every built-in method: frozen, keyword-only, checked on construction.

Each field is declared with :func:`~quantscope.config.fields.setting`, whose metadata (help,
choices, command-line name) feeds both the checks here and the ``quantize`` command's options.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from quantscope.config._checks import check_bool, check_int, check_number, check_op_types
from quantscope.config.base import MethodConfig
from quantscope.config.calibration import Calibration, Calibrator, calibrator, calibrator_names
from quantscope.config.fields import setting
from quantscope.errors import ConfigError

ACTIVATION_DTYPES = ("uint8", "int8")
OBJECTIVES = ("speed", "accuracy", "size")
WEIGHT_OP_TYPES = ("MatMul", "Gemm", "Conv")
WEIGHT_ALGORITHMS = ("rtn", "hqq", "gptq")
CALIBRATED_WEIGHT_ALGORITHMS = ("gptq",)

_PER_TENSOR = "One weight scale per tensor instead of per channel."
_REDUCE_RANGE = ("7-bit weights (avoid int16 saturation on x86 without VNNI); "
                 "default: decided from the CPU quantscope runs on.")
_SEED = "Random seed (of the calibration subset; of k-means for cluster)."
_OP_TYPES = "Comma-separated op types to rewrite."
_MIN_SIZE = "Weights with fewer elements stay float."
_OBJECTIVE = ("speed: time int8 against float on this machine and keep float the regions that are "
              "slower in int8; accuracy or size: quantize everything that can be (no timing).")


@dataclass(frozen=True, kw_only=True)
class StaticInt8(MethodConfig):
    """Full-integer int8: weights int8 symmetric (per-channel), activations 8-bit from calibration.

    ``activation_dtype="uint8"`` (U8S8) is the fast format on x86 CPUs without VNNI;
    ``reduce_range=None`` (auto) stores 7-bit weights when the CPU quantscope runs on is x86
    without VNNI: ONNX Runtime's U8S8 kernels there sum pairs of u8×s8 products in int16,
    which may saturate with full 8-bit weights and cost accuracy.
    ``integer_io`` makes the model take and return quantized tensors (for integer-only
    hardware); the scales and zero points are written into the model's metadata.
    ``calibration`` takes a calibrator's name or a calibrator value (``Percentile(99.9)``);
    :meth:`as_calibration` gives the settings as a :class:`Calibration` value.
    """

    method: ClassVar[str] = "static-int8"
    needs_calibration: ClassVar[bool] = True

    calibration: str = setting("auto", cli="--calibration", choices=calibrator_names,
                               help="Calibrator: how activation ranges are chosen (default auto: per tensor "
                                    "the least-error range that clips at most --max-saturation).")
    max_saturation: float = setting(0.0001, cli="--max-saturation",
                                    help="--calibration auto: largest share of a tensor's values a range may "
                                         "saturate (default 0.0001).")
    range_guard: bool = setting(True, cli="--no-range-guard", cli_value=False,
                                help="With an explicit --calibration: keep min-max for model inputs and for tensors "
                                     "the calibrator would clip heavily (listed in the plan); --no-range-guard "
                                     "only warns.")
    percentile: float = setting(99.99, cli="--percentile",
                                help="Percentile for --calibration percentile (default 99.99).")
    num_samples: int = setting(256, cli="--num-samples", help="Calibration samples to use (seeded subset).")
    batch_size: int = setting(16, cli="--batch-size", help="Calibration batch size.")
    per_channel: bool = setting(True, cli="--per-tensor", cli_value=False, help=_PER_TENSOR)
    activation_dtype: str = setting("uint8", cli="--activation-dtype", choices=ACTIVATION_DTYPES,
                                    help="Activation type (uint8 suits x86 CPUs without VNNI).")
    reduce_range: bool | None = setting(None, cli="--reduce-range/--full-range", help=_REDUCE_RANGE)
    integer_io: bool = setting(False, cli="--integer-io",
                               help="Quantized model inputs/outputs (for integer-only hardware).")
    quantize_activation_matmul: bool = setting(True, help="Quantize MatMuls whose inputs are both activations.")
    bins: int = setting(2048, help="Histogram bins of the calibration statistics.")
    seed: int = setting(0, cli="--seed", help=_SEED)
    equalize: bool = setting(False, cli="--equalize",
                             help="Cross-layer equalization of Conv -> Relu -> Conv weight ranges (CNNs).")
    bias_correction: bool = setting(False, cli="--bias-correction",
                                    help="Correct the mean output shift weight rounding adds to Conv/Gemm "
                                         "(from calibration means).")
    smoothquant: bool | None = setting(None, cli="--smoothquant/--no-smoothquant",
                                       help="SmoothQuant: move activation outliers of MatMul/Gemm inputs into the "
                                            "weights where that lowers the layer error; default: for token "
                                            "sequences (inputs of rank 3 or more, as in transformers) only.")
    gptq: bool = setting(False, cli="--gptq",
                         help="Round MatMul/Gemm int8 weights by GPTQ (Hessian-aware, from calibration inputs).")
    smoothquant_alpha: float = setting(0.0, cli="--smoothquant-alpha",
                                       help="SmoothQuant migration strength in (0, 1]; 0 searches it per layer.")
    objective: str = setting("speed", cli="--objective", choices=OBJECTIVES, help=_OBJECTIVE)
    target_threads: int = setting(1, cli="--target-threads", help="Threads the speed measurement uses (deployment's).")
    target_batch: int = setting(1, cli="--target-batch",
                                help="Batch size the speed measurement uses (deployment's; a model with a fixed "
                                     "batch is timed at its own).")
    measure: bool = setting(True, cli="--no-measure", cli_value=False,
                            help="Skip timing int8 against float (objective speed then keeps every region int8).")

    def __post_init__(self) -> None:
        if isinstance(self.calibration, Calibrator):  # a value: keep its name, its parameters as fields
            fields = {f.name for f in dataclasses.fields(self)}
            for name, value in self.calibration.params().items():
                if name not in fields:
                    raise ConfigError(f"calibrator {self.calibration} has a parameter {name!r} static-int8 cannot store")
                object.__setattr__(self, name, value)
            object.__setattr__(self, "calibration", self.calibration.name)
        if isinstance(self.smoothquant, float | int) and not isinstance(self.smoothquant, bool):
            object.__setattr__(self, "smoothquant_alpha", float(self.smoothquant))  # smoothquant=0.5: on, alpha 0.5
            object.__setattr__(self, "smoothquant", True)
        super().__post_init__()
        if not 0.0 <= self.smoothquant_alpha <= 1.0:
            check_number("smoothquant_alpha", self.smoothquant_alpha, 0.0, 1.0)
        check_number("percentile", self.percentile, 50.0, 100.0)
        check_number("max_saturation", self.max_saturation, 0.0, 1.0)
        check_int("num_samples", self.num_samples, 1)
        check_int("batch_size", self.batch_size, 1)
        check_int("bins", self.bins, 128, 1 << 16)
        check_int("seed", self.seed, 0)
        check_int("target_threads", self.target_threads, 1)
        check_int("target_batch", self.target_batch, 1)
        check_bool("reduce_range", self.reduce_range, optional=True)
        check_bool("smoothquant", self.smoothquant, optional=True)
        for flag in ("range_guard", "per_channel", "integer_io", "quantize_activation_matmul", "equalize", "bias_correction",
                     "gptq", "measure"):
            check_bool(flag, getattr(self, flag))

    def as_calibration(self) -> Calibration:
        """The calibration settings as one value: calibrator, samples, batches, seed, bins."""
        cls = type(calibrator(self.calibration))
        params = {f.name: getattr(self, f.name) for f in dataclasses.fields(cls) if hasattr(self, f.name)}
        return Calibration(method=calibrator(self.calibration, **params), num_samples=self.num_samples,
                           batch_size=self.batch_size, seed=self.seed, bins=self.bins, guard=self.range_guard)


@dataclass(frozen=True, kw_only=True)
class DynamicInt8(MethodConfig):
    """Dynamic-range int8: weights int8 ahead of time, activations quantized at run time.

    ``op_types`` defaults to MatMul, Gemm and Gather (embedding tables stored int8 per row):
    dynamic Conv (ConvInteger) may run slower than float on x86 CPUs without VNNI; add
    "Conv" only for a target where it pays.
    """

    method: ClassVar[str] = "dynamic-int8"

    op_types: tuple[str, ...] = setting(("MatMul", "Gemm", "Gather"), cli="--op-types", help=_OP_TYPES)
    per_channel: bool = setting(True, cli="--per-tensor", cli_value=False, help=_PER_TENSOR)
    reduce_range: bool | None = setting(None, cli="--reduce-range/--full-range", help=_REDUCE_RANGE)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "op_types", check_op_types("op_types", self.op_types, (*WEIGHT_OP_TYPES, "Gather")))
        check_bool("reduce_range", self.reduce_range, optional=True)
        check_bool("per_channel", self.per_channel)


# Kept float32 by float16 (reasons in quantscope.methods.float16.BLOCK_REASONS): coordinate maths
# (Resize, Upsample, GridSample, RoiAlign), ranking (TopK), accumulations that overflow 65504
# (CumSum, ReduceProd, ReduceSumSquare, ReduceL2, ReduceLogSumExp), and ops ONNX Runtime's CPU
# provider may refuse to load in float16 (RandomNormal, RandomUniform, EyeLike). Ops whose ONNX
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

    weights_only: bool = setting(False, cli="--weights-only",
                                 help="float16: store float16 weights, compute in float32.")
    block_ops: tuple[str, ...] = setting(FLOAT16_BLOCK_OPS, help="Op types that stay float32 between Casts.")

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.block_ops, str) or not all(isinstance(op, str) for op in self.block_ops):
            raise ConfigError(f"block_ops must be a sequence of op type names, not {self.block_ops!r}")
        object.__setattr__(self, "block_ops", tuple(self.block_ops))
        check_bool("weights_only", self.weights_only)


@dataclass(frozen=True, kw_only=True)
class _WeightOnly(MethodConfig):
    """Weight-only block-wise quantization of MatMul/Gemm weights (activations stay float)."""

    bits: ClassVar[int] = 8
    block_size: int = setting(32, cli="--block-size", choices=(16, 32, 64, 128, 256),
                              help="Block size for weight-int8/weight-int4 (16-256).")
    symmetric: bool = setting(True, cli="--asymmetric", cli_value=False,
                              help="Asymmetric blocks (weight-only methods).")
    format: str = setting("auto", cli="--format", choices=("auto", "matmulnbits", "qdq"),
                          help="Weight-only storage format.")
    algorithm: str = setting("rtn", cli="--algorithm", choices=WEIGHT_ALGORITHMS,
                             help="Weight-only rounding: round-to-nearest, HQQ (half-quadratic solver), or "
                                  "GPTQ (Hessian-aware, needs calibration data).")
    min_size: int = setting(1024, help=_MIN_SIZE)
    num_samples: int = setting(128, cli="--num-samples",
                               help="Calibration samples to use (seeded subset).")
    batch_size: int = setting(16, cli="--batch-size", help="Calibration batch size.")
    seed: int = setting(0, cli="--seed", help=_SEED)
    gptq_damp: float = setting(0.01, help="GPTQ dampening, a share of the mean Hessian diagonal.")
    awq: bool = setting(False, cli="--awq",
                        help="Activation-aware weight scales (AWQ; needs calibration data), searched per layer.")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("min_size", self.min_size, 0)
        check_bool("symmetric", self.symmetric)
        check_int("num_samples", self.num_samples, 1)
        check_int("batch_size", self.batch_size, 1)
        check_int("seed", self.seed, 0)
        check_number("gptq_damp", self.gptq_damp, 0.0, 10.0)
        check_bool("awq", self.awq)

    @property  # type: ignore[override]
    def needs_calibration(self) -> bool:
        """Only the algorithms that read calibration statistics need data (GPTQ, AWQ); RTN and HQQ do not."""
        return self.algorithm in CALIBRATED_WEIGHT_ALGORITHMS or self.awq

    def as_calibration(self) -> Calibration:
        """The sampling settings of the calibration pass GPTQ reads its statistics from."""
        return Calibration(method=calibrator("minmax"), num_samples=self.num_samples,
                           batch_size=self.batch_size, seed=self.seed)


@dataclass(frozen=True, kw_only=True)
class WeightInt8(_WeightOnly):
    """Weight-only int8 in blocks along the input axis; activations stay float."""

    method: ClassVar[str] = "weight-int8"
    bits: ClassVar[int] = 8


@dataclass(frozen=True, kw_only=True)
class WeightInt4(_WeightOnly):
    """Weight-only int4 in blocks along the input axis (MatMulNBits where it loads); activations stay float."""

    method: ClassVar[str] = "weight-int4"
    bits: ClassVar[int] = 4


def _check_packed(config: Cluster | Ternary | Binary) -> None:
    """The checks shared by the packed-code methods: op types, and the smallest weight rewritten."""
    check_int("min_size", config.min_size, 0)
    object.__setattr__(config, "op_types", check_op_types("op_types", config.op_types, WEIGHT_OP_TYPES))


@dataclass(frozen=True, kw_only=True)
class Cluster(MethodConfig):
    """Weight clustering: seeded k-means codebook of 2**bits centroids per tensor (or channel).

    Stored as packed ``bits``-bit indices plus the codebook; graph ops expand them at load.
    """

    method: ClassVar[str] = "cluster"

    bits: int = setting(4, cli="--bits", help="Bits for cluster (2-8).")
    per_channel: bool = setting(False, cli="--per-tensor", cli_value=False, help=_PER_TENSOR)
    op_types: tuple[str, ...] = setting(WEIGHT_OP_TYPES, cli="--op-types", help=_OP_TYPES)
    iterations: int = setting(25, help="k-means iterations.")
    seed: int = setting(0, cli="--seed", help=_SEED)
    min_size: int = setting(1024, help=_MIN_SIZE)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("bits", self.bits, 2, 8)
        check_int("iterations", self.iterations, 1, 1000)
        check_int("seed", self.seed, 0)
        _check_packed(self)


@dataclass(frozen=True, kw_only=True)
class Ternary(MethodConfig):
    """Ternary weights {-a, 0, +a} per output channel (threshold = ``threshold`` * mean|w|), 2-bit packed."""

    method: ClassVar[str] = "ternary"

    threshold: float = setting(0.7, help="Weights below threshold * mean|w| become 0.")
    op_types: tuple[str, ...] = setting(WEIGHT_OP_TYPES, cli="--op-types", help=_OP_TYPES)
    min_size: int = setting(1024, help=_MIN_SIZE)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number("threshold", self.threshold, 0.0, 2.0, hi_open=True)
        _check_packed(self)


@dataclass(frozen=True, kw_only=True)
class Binary(MethodConfig):
    """Binary weights +-a per output channel (a = mean|w|, XNOR-Net scaling), 1-bit packed."""

    method: ClassVar[str] = "binary"

    op_types: tuple[str, ...] = setting(WEIGHT_OP_TYPES, cli="--op-types", help=_OP_TYPES)
    min_size: int = setting(1024, help=_MIN_SIZE)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_packed(self)
