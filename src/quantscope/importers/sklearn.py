"""scikit-learn → ONNX with skl2onnx: estimators and pipelines, input type from the example data.

Classifiers are converted without ZipMap, so probabilities are a plain ``[batch, classes]``
tensor. Float64 example data gives a float32 input (what ONNX Runtime and quantization work
in); the check then feeds the same float32 values to scikit-learn. MLPs become MatMul graphs
that quantize; linear and tree models become ``ai.onnx.ml`` operators that keep their
parameters in node attributes, which no int8 method can quantize: the model's notes (and so
every plan made from it) say so.

A pickle or joblib file runs code while it loads: :func:`convert_file` reads one only with
``trust=True``.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import skl2onnx
import sklearn
from skl2onnx.common.data_types import (
    BooleanTensorType,
    DoubleTensorType,
    FloatTensorType,
    Int64TensorType,
    StringTensorType,
)
from sklearn.base import BaseEstimator, is_classifier

from quantscope.errors import ConfigError, ConversionError
from quantscope.importers._proto import finalize
from quantscope.importers.check import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    check_outputs,
    compare_one,
    run_onnx,
)
from quantscope.io import Model

logger = logging.getLogger(__name__)

ML_DOMAIN = "ai.onnx.ml"
DEFAULT_OPS_FOR = ("LinearClassifier", "LinearRegressor", "Normalizer", "Scaler")
"""ai.onnx.ml operators that skl2onnx can also write with default-domain operators."""
PICKLE_WARNING = (
    "loading a pickle or joblib file runs arbitrary code stored in it; pass trust=True "
    "(--trust on the command line) only for files you made or whose source you trust"
)


def convert(
    estimator: Any,
    example_inputs: Any,
    *,
    input_name: str = "X",
    opset: int | None = None,
    keep_float64: bool = False,
    default_ops: bool = False,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
) -> Model:
    """Convert a fitted estimator or pipeline; ``example_inputs`` is a 2-D array of samples.

    ``default_ops=True`` asks skl2onnx to write linear models, scalers and normalizers with
    default-domain operators (MatMul, Add, Sub, ...) instead of ``ai.onnx.ml`` ones, so int8 and
    float16 methods can work on them; when skl2onnx cannot, the ``ai.onnx.ml`` form is kept and
    the notes say why.
    """
    if not isinstance(estimator, BaseEstimator):
        raise ConfigError(f"the sklearn importer converts a fitted estimator, not a {type(estimator).__name__}")
    x, ref_dtype = _example(estimator, example_inputs, keep_float64)
    notes = [
        f"imported from scikit-learn {sklearn.__version__} with skl2onnx {skl2onnx.__version__} "
        f"({type(estimator).__name__}, input {input_name}: {x.dtype}[batch, {x.shape[1]}])"
    ]
    proto = None
    if default_ops:
        try:
            proto = _to_onnx(estimator, x, input_name, opset, black_op=set(DEFAULT_OPS_FOR))
            notes.append(
                "default_ops: linear models, scalers and normalizers (if any) written with default-domain "
                "operators instead of ai.onnx.ml ones"
            )
        except ConversionError as exc:
            notes.append(f"default_ops: not possible for this model ({exc}); kept the ai.onnx.ml form")
    if proto is None:
        proto = _to_onnx(estimator, x, input_name, opset)
    ml_ops = Counter(n.op_type for n in proto.graph.node if n.domain == ML_DOMAIN)
    if ml_ops:
        ops = ", ".join(f"{op} x{n}" if n > 1 else op for op, n in sorted(ml_ops.items()))
        hint = ""
        if not default_ops and set(ml_ops) & set(DEFAULT_OPS_FOR):
            hint = "; convert with default_ops=True (--default-ops) to write linear models and scalers as MatMul graphs"
        notes.append(
            f"{sum(ml_ops.values())} node(s) use ai.onnx.ml operators ({ops}); they keep their "
            "parameters in node attributes, so int8 methods cannot quantize them and they stay float; "
            "analysis applies to the whole model, and float16/int8 to its default-domain "
            f"(MatMul, Conv) nodes, if any{hint}"
        )
    model = finalize(proto, notes=notes, name=type(estimator).__name__)
    check = _check(model, estimator, x, x.astype(ref_dtype), rtol=rtol, atol=atol)
    return Model(ir=model.ir, fingerprint=model.fingerprint, notes=(*model.notes, check))


def _to_onnx(estimator: Any, x: np.ndarray, input_name: str, opset: int | None, black_op: set[str] | None = None) -> Any:
    options = {id(step): {"zipmap": False} for step in _steps(estimator) if _has_zipmap(step)}
    target: dict[str, int] | None = None
    if opset is not None:
        target = {"": int(opset), ML_DOMAIN: 3}
    try:
        return skl2onnx.to_onnx(
            estimator, initial_types=[(input_name, _tensor_type(x))], target_opset=target,
            options=options or None, black_op=black_op,
        )
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConversionError(
            f"skl2onnx cannot convert {type(estimator).__name__}: {type(exc).__name__}: {first}. "
            "Check the estimator is fitted and that skl2onnx supports every step "
            "(custom transformers need a registered converter)"
        ) from exc


def convert_file(path: str | os.PathLike[str], example_inputs: Any = None, *, trust: bool = False, **kwargs: Any) -> Model:
    """Unpickle a fitted estimator (pickle or joblib) and convert it; needs ``trust=True``."""
    p = Path(path)
    if not trust:
        raise ConfigError(f"refusing to load {p}: {PICKLE_WARNING}")
    logger.warning("loading %s: %s", p, PICKLE_WARNING)
    try:
        if p.suffix.lower() == ".joblib":
            import joblib

            obj = joblib.load(p)
        else:
            with open(p, "rb") as fh:
                obj = pickle.load(fh)  # the caller asked for it with trust=True
    except Exception as exc:
        raise ConversionError(f"cannot unpickle {p}: {type(exc).__name__}: {exc}") from exc
    return convert(obj, example_inputs, **kwargs)


def _steps(estimator: Any) -> list[Any]:
    """The estimator and every estimator nested in it (pipelines, column transformers, ...)."""
    out = [estimator]
    if hasattr(estimator, "get_params"):
        for value in estimator.get_params(deep=True).values():
            if isinstance(value, BaseEstimator):
                out.append(value)
    return out


def _has_zipmap(step: Any) -> bool:
    """Whether skl2onnx's converter for ``step`` adds a ZipMap (which we turn off)."""
    if not is_classifier(step):
        return False
    try:
        from skl2onnx._supported_operators import sklearn_operator_name_map
        from skl2onnx.common._registration import get_converter

        alias = sklearn_operator_name_map.get(type(step))
        if alias is None:
            return False
        return "zipmap" in (get_converter(alias).get_allowed_options() or {})
    except Exception:  # private API moved: assume the usual classifier converter
        return True


def _example(estimator: Any, example_inputs: Any, keep_float64: bool) -> tuple[np.ndarray, np.dtype]:
    """The example as the ONNX input type, and the dtype to give scikit-learn the same values in."""
    n_features = getattr(estimator, "n_features_in_", None)
    if example_inputs is None:
        raise ConfigError(
            f"a scikit-learn model needs example inputs (an array [samples, {n_features or 'features'}]) "
            "to infer its input type and check the conversion"
        )
    if isinstance(example_inputs, dict):
        if len(example_inputs) != 1:
            raise ConfigError("scikit-learn models take one 2-D input; pass one array, not a dict of several")
        example_inputs = next(iter(example_inputs.values()))
    x = np.asarray(example_inputs)
    if x.ndim != 2:
        raise ConfigError(f"example inputs for a scikit-learn model must be 2-D [samples, features], got shape {x.shape}")
    if n_features is not None and x.shape[1] != n_features:
        raise ConfigError(f"the estimator was fitted on {n_features} features but the example has {x.shape[1]}")
    ref_dtype = x.dtype
    if x.dtype == np.float64 and not keep_float64:
        x = x.astype(np.float32)  # float32 values, which float64 holds exactly, go to scikit-learn
    elif x.dtype.kind == "i" and x.dtype != np.int64:
        x = x.astype(np.int64)
    return x, ref_dtype


def _tensor_type(x: np.ndarray) -> Any:
    shape = [None, int(x.shape[1])]
    kinds = {"f": FloatTensorType if x.dtype == np.float32 else DoubleTensorType, "i": Int64TensorType,
             "b": BooleanTensorType, "U": StringTensorType, "O": StringTensorType}
    if x.dtype.kind not in kinds:
        raise ConfigError(f"cannot infer an ONNX input type from example data of dtype {x.dtype}")
    return kinds[x.dtype.kind](shape)


def _reference(estimator: Any, name: str, x: np.ndarray) -> np.ndarray | None:
    """What scikit-learn computes for the ONNX output called ``name`` (None: no counterpart)."""
    if name == "label":
        return np.asarray(estimator.predict(x))
    if name == "probabilities" and hasattr(estimator, "predict_proba"):
        return np.asarray(estimator.predict_proba(x))
    if name in ("probabilities", "scores") and hasattr(estimator, "decision_function"):
        return np.asarray(estimator.decision_function(x))  # classifiers without probabilities
    if name == "scores" and hasattr(estimator, "transform"):
        return np.asarray(estimator.transform(x))  # clusterers: distances to the centres
    if name == "variable":
        fn = estimator.predict if hasattr(estimator, "predict") else estimator.transform
        return np.asarray(fn(x))
    return None


def _check(model: Model, estimator: Any, x: np.ndarray, x_ref: np.ndarray, *, rtol: float, atol: float) -> str:
    """Compare each ONNX output with its scikit-learn counterpart (``x_ref``: the same values)."""
    names = [spec.name for spec in model.outputs]
    expected = [_reference(estimator, name, x_ref) for name in names]
    if all(e is not None for e in expected):
        return check_outputs(
            model, {model.inputs[0].name: x}, [e for e in expected if e is not None],
            framework="scikit-learn", rtol=rtol, atol=atol,
        ).describe()
    got = run_onnx(model, {model.inputs[0].name: x})
    parts, skipped = [], []
    for name, g, e in zip(names, got, expected, strict=True):
        if e is None or (e.size != np.asarray(g).size):
            skipped.append(name)
            continue
        parts.append(compare_one(name, np.asarray(g), e, framework="scikit-learn", rtol=rtol, atol=atol).describe())
    if not parts:
        raise ConversionError(
            f"no ONNX output of {type(estimator).__name__} ({names}) has a scikit-learn counterpart to "
            "check it against; the conversion cannot be verified"
        )
    return (
        f"ONNX Runtime reproduces scikit-learn on {x.shape[0]} example sample(s) "
        f"(atol {atol:g} + rtol {rtol:g}·|ref|): {'; '.join(parts)}; not checked: {', '.join(skipped)}"
    )
