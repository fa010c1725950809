"""Framework models → ONNX: ``to_onnx(obj, example_inputs)`` for PyTorch, Keras/TensorFlow and scikit-learn.

One entry point dispatches on the object's type through a small registry. The registry matches
the top-level package of the object's class (or of any base class) by name, so nothing here
imports a framework until that framework's model is actually converted: ``import quantscope``
stays free of torch, tensorflow and sklearn. Each importer lives in its own module behind its
extra (``pip install 'quantscope[torch]'``, ``[tensorflow]``, ``[sklearn]``).

Every import is checked: the ONNX model runs in ONNX Runtime on the example inputs and must
reproduce the framework's outputs within a stated tolerance (:mod:`quantscope.importers.check`),
or :class:`~quantscope.errors.ConversionError` is raised showing the largest difference.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantscope.errors import ConfigError, ConversionError
from quantscope.importers.trust import check_keras_file, refuse_saved_model
from quantscope.io import Model

logger = logging.getLogger(__name__)

__all__ = ["IMPORTERS", "Importer", "example_arrays", "from_path", "importer_for", "is_factory_spec", "load_factory", "to_onnx"]


@dataclass(frozen=True)
class Importer:
    """One framework: which classes it converts, which files it reads, where its code lives."""

    name: str
    extra: str
    module: str  # the importer's module, imported on first use
    roots: tuple[str, ...]  # top-level packages whose classes it converts
    requires: tuple[str, ...]  # packages the extra provides (checked before importing)
    suffixes: tuple[str, ...] = ()

    def load(self) -> Any:
        missing = [pkg for pkg in self.requires if importlib.util.find_spec(pkg) is None]
        if missing:
            raise ConversionError(
                f"converting a {self.name} model needs {', '.join(missing)}, which is not installed; "
                f"install it with: pip install 'quantscope[{self.extra}]'"
            )
        return importlib.import_module(self.module)


IMPORTERS: tuple[Importer, ...] = (
    Importer(
        "torch", "torch", f"{__name__}.torch", ("torch",), ("torch", "onnxscript"), (".pt", ".pth", ".ts", ".pt2"),
    ),
    Importer(
        "keras", "tensorflow", f"{__name__}.keras", ("keras", "tf_keras", "tensorflow"),
        ("tensorflow", "tf2onnx"), (".keras", ".h5"),
    ),
    Importer(
        "sklearn", "sklearn", f"{__name__}.sklearn", ("sklearn",), ("sklearn", "skl2onnx"),
        (".pkl", ".pickle", ".joblib"),
    ),
)


def importer_for(obj: Any) -> Importer:
    """The importer for ``obj``, found from the packages its class and base classes come from."""
    for cls in type(obj).__mro__:
        root = (cls.__module__ or "").split(".")[0]
        for imp in IMPORTERS:
            if root in imp.roots:
                return imp
    raise ConfigError(
        f"cannot convert a {type(obj).__module__}.{type(obj).__qualname__}: quantscope imports "
        "torch.nn.Module, Keras models (and .keras files or SavedModel directories), "
        "scikit-learn estimators and pipelines, and .onnx files"
    )


def to_onnx(obj: Any, example_inputs: Any = None, **kwargs: Any) -> Model:
    """Convert a framework model to a checked ONNX :class:`~quantscope.io.Model`.

    ``obj`` is a ``torch.nn.Module``, a Keras model, a scikit-learn estimator or pipeline, a
    :class:`Model` (returned as is), or a path (see :func:`from_path`). ``example_inputs`` are
    what the model is called with (a tensor/array, a tuple of them, or a dict keyed by input
    name), batch first, or a quantscope ``Dataset`` (its first batch); they fix the input types
    and are used to check the conversion. Keyword arguments go to the framework's importer (``rtol``, ``atol`` for the check are
    understood by all). The caller's model is not modified.
    """
    if isinstance(obj, Model):
        return obj
    example_inputs = example_arrays(example_inputs)
    if isinstance(obj, str | os.PathLike):
        return from_path(obj, example_inputs, **kwargs)
    importer = importer_for(obj)
    logger.info("converting a %s model with the %s importer", type(obj).__qualname__, importer.name)
    return _call(importer.load().convert, importer.name, obj, example_inputs, **kwargs)


def from_path(path: str | os.PathLike[str], example_inputs: Any = None, *, trust: bool = False, **kwargs: Any) -> Model:
    """Convert a model file: ``.onnx``, ``.keras``/``.h5``, a SavedModel directory, a pickle, a
    TorchScript archive (``.pt``/``.pth``/``.ts``) or a ``torch.export`` program (``.pt2``).

    A pickle or joblib file (``.pkl``, ``.pickle``, ``.joblib``) runs code while it loads, a
    SavedModel runs its graph while it converts, and a Keras file with Lambda layers or custom
    objects runs their code, and so does a TorchScript archive: each is read only with ``trust=True`` (``--trust`` on the command
    line; see :mod:`quantscope.importers.trust`): load only files you made or whose source you trust.
    """
    p = Path(path)
    example_inputs = example_arrays(example_inputs)
    if not p.exists():
        raise ConfigError(f"model path not found: {p}")
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        from quantscope.io import load

        return load(p)
    if p.is_dir():
        if (p / "saved_model.pb").is_file() or (p / "saved_model.pbtxt").is_file():
            if not trust:
                refuse_saved_model(p)
            return _call(IMPORTERS[1].load().convert_saved_model, "SavedModel", p, example_inputs, **kwargs)
        raise ConfigError(f"{p} is a directory but not a TensorFlow SavedModel (no saved_model.pb in it)")
    if suffix in (".keras", ".h5"):
        check_keras_file(p, trust)
    for imp in IMPORTERS:
        if suffix in imp.suffixes:
            return _call(imp.load().convert_file, imp.name, p, example_inputs, trust=trust, **kwargs)
    raise ConfigError(
        f"cannot tell what kind of model {p} is from its suffix {suffix or '(none)'}; quantscope reads "
        ".onnx, .keras, .h5, SavedModel directories, torch.export programs (.pt2) and (with trust) "
        ".pkl/.pickle/.joblib files and TorchScript archives (.pt/.pth/.ts); for a PyTorch module use a "
        "'module:function' that returns the model and example inputs"
    )


def example_arrays(example_inputs: Any, samples: int = 4) -> Any:
    """Example inputs as importers take them: a quantscope ``Dataset`` becomes its first batch
    (one array for a single input, else a dict by input name); anything else is returned as is."""
    from quantscope.data import Dataset

    if not isinstance(example_inputs, Dataset):
        return example_inputs
    batch = next(iter(example_inputs.batches(samples)), None)
    if batch is None:
        raise ConfigError("the example Dataset holds no samples; give at least one")
    arrays = dict(batch.inputs)
    return next(iter(arrays.values())) if len(arrays) == 1 else arrays


def _call(fn: Any, name: str, *args: Any, **kwargs: Any) -> Model:
    """Call an importer, turning options it does not take into a :class:`ConfigError`."""
    import inspect

    try:
        inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"the {name} importer does not take these options: {exc}") from exc
    return fn(*args, **kwargs)


def is_factory_spec(source: str) -> bool:
    """Whether ``source`` reads as ``module:function`` (or ``file.py:function``), not a path."""
    left, sep, right = source.rpartition(":")
    return bool(sep and left and right.isidentifier() and not Path(source).exists())


def load_factory(spec: str) -> tuple[Any, Any]:
    """Call the ``module:function`` (or ``path/to/file.py:function``) that builds a model.

    The function takes no arguments and returns ``(model, example_inputs)`` (or just a model,
    for Keras models and files that need no examples). Importing the module runs its code,
    as ``python -m`` would: name only modules you trust.
    """
    module_name, _, func_name = spec.rpartition(":")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise ConfigError(f"{path} not found (from {spec!r})")
            mod_spec = importlib.util.spec_from_file_location(path.stem, path)
            if mod_spec is None or mod_spec.loader is None:
                raise ConfigError(f"cannot import {path} as a Python module")
            module = importlib.util.module_from_spec(mod_spec)
            mod_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"cannot import {module_name!r} (from {spec!r}): {type(exc).__name__}: {exc}") from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigError(f"{module_name!r} has no function {func_name!r}; give 'module:function'")
    try:
        made = func()
    except Exception as exc:
        raise ConversionError(f"{spec}() failed: {type(exc).__name__}: {exc}") from exc
    if isinstance(made, tuple) and len(made) == 2:
        return made[0], made[1]
    return made, None
