"""The public surface: ``__all__``, a light ``import quantscope``, and the exception tree's exit codes."""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys
import textwrap

import pytest

import quantscope
import quantscope.errors as errors

EXPECTED_ALL = [
    "MSE",  # ruff sorts __all__ isort-style: constants (all capitals) first
    "Auto",
    "Batch",
    "Binary",
    "Calibration",
    "Cluster",
    "ConfigError",
    "ConversionError",
    "DataError",
    "DataMismatchError",
    "Dataset",
    "DynamicInt8",
    "EmptyDatasetError",
    "Entropy",
    "Float16",
    "ImagePreprocess",
    "MethodConfig",
    "MinMax",
    "Model",
    "ModelError",
    "NodeDecision",
    "NodeSelector",
    "NonFiniteDataError",
    "OutputError",
    "Percentile",
    "QualityGateError",
    "QuantPlan",
    "QuantizedModel",
    "QuantscopeError",
    "RuntimeCrashError",
    "RuntimeFailure",
    "SelectorError",
    "StaticInt8",
    "TensorSpec",
    "Ternary",
    "TuneResult",
    "UnsupportedModelError",
    "WeightInt4",
    "WeightInt8",
    "__version__",
    "analyze",
    "as_dataset",
    "config_from_dict",
    "load",
    "quantize",
    "report",
    "robustness",
    "save",
    "sweep",
    "to_onnx",
    "tune",
]

# 0 ok, 2 a command line that does not parse (click), 3 any refused input or runtime failure,
# 4 quality gate, 1 internal error
EXIT_CODES: dict[type[errors.QuantscopeError], int] = {
    errors.QuantscopeError: 1,
    errors.ConfigError: 3,
    errors.SelectorError: 3,
    errors.ModelError: 3,
    errors.UnsupportedModelError: 3,
    errors.RuntimeCrashError: 3,
    errors.ConversionError: 3,
    errors.DataError: 3,
    errors.DataMismatchError: 3,
    errors.NonFiniteDataError: 3,
    errors.EmptyDatasetError: 3,
    errors.RuntimeFailure: 3,
    errors.OutputError: 3,
    errors.QualityGateError: 4,
}

BUILTIN_BASES: dict[type[errors.QuantscopeError], type[Exception]] = {
    errors.ConfigError: ValueError,
    errors.ModelError: ValueError,
    errors.DataError: ValueError,
    errors.RuntimeFailure: RuntimeError,
    errors.OutputError: OSError,
}


def test_all_is_the_expected_sorted_list() -> None:
    assert quantscope.__all__ == EXPECTED_ALL
    assert sorted(EXPECTED_ALL[1:]) == EXPECTED_ALL[1:]
    assert len(set(EXPECTED_ALL)) == len(EXPECTED_ALL)


@pytest.mark.parametrize("name", EXPECTED_ALL)
def test_every_public_name_is_importable(name: str) -> None:
    module = importlib.import_module("quantscope")
    assert getattr(module, name) is not None
    namespace: dict[str, object] = {}
    exec(f"from quantscope import {name}", namespace)
    assert namespace[name] is getattr(module, name)


def test_import_is_light_and_leaves_logging_alone() -> None:
    code = textwrap.dedent(
        """
        import json, logging, sys
        import quantscope
        heavy = ("torch", "tensorflow", "keras", "sklearn", "matplotlib", "onnxruntime.quantization", "ray")
        print(json.dumps({
            "loaded": sorted(m for m in sys.modules if m.split(".")[0] in heavy or m.startswith(heavy)),
            "root_handlers": len(logging.getLogger().handlers),
            "root_level": logging.getLogger().level,
            "package_handlers": [type(h).__name__ for h in logging.getLogger("quantscope").handlers],
        }))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["loaded"] == []
    assert report["root_handlers"] == 0
    assert report["root_level"] == 30  # WARNING, Python's default: not configured by the import
    assert all(h == "NullHandler" for h in report["package_handlers"])


@pytest.mark.parametrize(
    ("cls", "code"), list(EXIT_CODES.items()), ids=lambda v: getattr(v, "__name__", str(v))
)
def test_exit_codes_match_design(cls: type[errors.QuantscopeError], code: int) -> None:
    assert cls.exit_code == code
    assert issubclass(cls, errors.QuantscopeError)
    assert cls("message").exit_code == code


def test_every_exception_is_public_and_in_the_tree() -> None:
    classes = {
        obj
        for _, obj in inspect.getmembers(errors, inspect.isclass)
        if issubclass(obj, BaseException) and obj.__module__ == errors.__name__
    }
    assert classes == set(EXIT_CODES)
    for cls in classes:
        assert cls.__name__ in quantscope.__all__
        assert getattr(quantscope, cls.__name__) is cls
    for cls, base in BUILTIN_BASES.items():
        assert issubclass(cls, base)
    assert issubclass(errors.SelectorError, errors.ConfigError)
    assert issubclass(errors.UnsupportedModelError, errors.ModelError)
    for sub in (errors.DataMismatchError, errors.NonFiniteDataError, errors.EmptyDatasetError):
        assert issubclass(sub, errors.DataError)


def test_public_names_are_functions_even_after_their_modules_are_imported() -> None:
    """No submodule shares a public function's name: importing every module first changes nothing."""
    code = (
        "import importlib, pkgutil, quantscope; "
        "[importlib.import_module(m.name) for m in pkgutil.walk_packages(quantscope.__path__, 'quantscope.') "
        " if not m.name.rsplit('.', 1)[-1].startswith('_') and 'importers' not in m.name "
        " and 'backends' not in m.name and 'execution' not in m.name]; "
        "import types; bad = [n for n in quantscope.__all__ if isinstance(getattr(quantscope, n), types.ModuleType)]; "
        "assert not bad, bad; assert callable(quantscope.quantize) and callable(quantscope.report)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
