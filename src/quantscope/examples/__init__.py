"""Bundled example model and data for demos and tests.

The files are produced once by ``examples/digits/train.py`` and shipped as package data:

* :data:`DIGITS_MODEL` -- float ONNX CNN (opset 17), input ``image`` [batch, 1, 32, 32]
  float32 in [0, 1], output ``logits`` [batch, 10]
* :data:`DIGITS_CALIB` -- ``.npz`` with ``image`` float32 [256, 1, 32, 32], ``labels`` int64 [256]
* :data:`DIGITS_EVAL` -- ``.npz`` with ``image`` float32 [400, 1, 32, 32], ``labels`` int64 [400]
* :data:`DIGITS_META` -- ``.json`` provenance (preprocessing, split seed, accuracy, MFLOPs)

This module deliberately has no dependency on torch.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = [
    "DIGITS_CALIB",
    "DIGITS_EVAL",
    "DIGITS_META",
    "DIGITS_MODEL",
    "example_path",
]

DIGITS_MODEL = "digits_cnn.onnx"
DIGITS_CALIB = "digits_calib.npz"
DIGITS_EVAL = "digits_eval.npz"
DIGITS_META = "digits.json"

_REGENERATE_HINT = "regenerate with `python examples/digits/train.py` from a source checkout"


def example_path(name: str) -> Path:
    """Return the filesystem path of the bundled example file ``name``.

    ``name`` is a plain file name such as :data:`DIGITS_MODEL`. Raises
    :class:`FileNotFoundError` if the file is not present in the installed package.
    """
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError(f"example name must be a plain file name, got {name!r}")
    resource = files(__name__).joinpath(name)
    if not resource.is_file():
        available = sorted(
            entry.name
            for entry in files(__name__).iterdir()
            if entry.is_file() and not entry.name.endswith((".py", ".pyc"))
        )
        raise FileNotFoundError(
            f"bundled example file {name!r} not found in package {__name__!r} "
            f"(available: {', '.join(available) or 'none'}); {_REGENERATE_HINT}"
        )
    if isinstance(resource, Path):
        return resource
    # Non-filesystem installs (e.g. zip imports) are not supported: callers need a real path
    # to hand to onnxruntime / numpy.
    raise FileNotFoundError(
        f"bundled example file {name!r} is inside a non-filesystem package ({resource!r}); "
        "install quantscope as a regular directory to use the examples"
    )
