"""Every exception quantscope raises on purpose.

Catch :class:`QuantscopeError` to catch all of them; each subclass also inherits
the nearest builtin, so ``except ValueError`` keeps working for callers who
do not know us::

    QuantscopeError                      (Exception)   exit code 1 unless below
    ├── ConfigError                      (ValueError)  exit code 3: bad option or config value
    │   └── SelectorError                               a node selector matched nothing
    ├── ModelError                       (ValueError)  exit code 3: unreadable or invalid model
    │   ├── UnsupportedModelError                       nothing in the model can be done
    │   │   └── RuntimeCrashError                       ONNX Runtime crashed or hung on a written model
    │   └── ConversionError                             a framework model did not convert to ONNX
    ├── DataError                        (ValueError)  exit code 3: data does not fit the model
    │   ├── DataMismatchError                           names, shapes or dtypes differ
    │   ├── NonFiniteDataError                          NaN or infinity in calibration data
    │   └── EmptyDatasetError                           no samples
    ├── RuntimeFailure                   (RuntimeError) exit code 3: ONNX Runtime refused
    ├── OutputError                      (OSError)     exit code 3: cannot write the output
    └── QualityGateError                               exit code 4: no variant within the quality budget

Messages name the problem and the fix. Exit code 2 is left to the command line itself (an
unknown option, a missing argument, a value click cannot parse): every input quantscope
looks at and refuses, an option's value included, exits 3, so a script can tell
"the command line is malformed" from "this model, data or setting cannot be used".
Ctrl-C exits 130 and SIGTERM 143 (:mod:`quantscope.signals`), each after the same clean-up.
"""

from __future__ import annotations


class QuantscopeError(Exception):
    """Root of every error quantscope raises on purpose."""

    exit_code: int = 1


class ConfigError(QuantscopeError, ValueError):
    """An option or configuration value is invalid."""

    exit_code = 3


class SelectorError(ConfigError):
    """A node selection rule matched no node of the model."""


class ModelError(QuantscopeError, ValueError):
    """The model file is missing, corrupt, or not a valid ONNX model."""

    exit_code = 3


class UnsupportedModelError(ModelError):
    """The model is valid but nothing in it can be quantized by the chosen method."""


class RuntimeCrashError(UnsupportedModelError):
    """ONNX Runtime crashed (or hung) loading or running a model, seen from a child process.

    ``report`` (a :class:`quantscope.loadcheck.LoadReport`) says which optimizer and nodes.
    """

    def __init__(self, message: str, report: object = None) -> None:
        super().__init__(message)
        self.report = report


class ConversionError(ModelError):
    """A PyTorch, Keras or scikit-learn model did not convert to ONNX, or its ONNX outputs differ."""


class DataError(QuantscopeError, ValueError):
    """The data cannot be used with the model."""

    exit_code = 3


class DataMismatchError(DataError):
    """Input names, shapes or dtypes of the data do not match the model."""


class NonFiniteDataError(DataError):
    """The data holds NaN or infinite values."""


class EmptyDatasetError(DataError):
    """The dataset holds no samples."""


class RuntimeFailure(QuantscopeError, RuntimeError):
    """ONNX Runtime could not create a session for, or run, a model."""

    exit_code = 3


class OutputError(QuantscopeError, OSError):
    """An output cannot be written where it was asked to go."""

    exit_code = 3


class QualityGateError(QuantscopeError):
    """No quantized variant stays within the quality budget (``--max-drop``)."""

    exit_code = 4
