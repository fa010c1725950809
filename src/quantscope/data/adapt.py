"""``as_dataset``: whatever a user passes as data, as a :class:`Dataset`.

Every public entry point that takes data (``quantize``, ``analyze``, ``sweep``, ``tune``,
``robustness``, ``to_onnx``'s example inputs) calls :func:`as_dataset` first, so all of them
accept the same things and refuse the rest with the same message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from quantscope.data.dataset import Dataset
from quantscope.data.frameworks import (
    element_dict,
    framework_of,
    framework_source,
    is_tensor,
    to_numpy,
)
from quantscope.data.sources import split_keys
from quantscope.errors import DataError

ACCEPTED = (
    "a quantscope Dataset, a NumPy array (the model's single input, samples on the first "
    "axis), a dict {input name: array} (with optional 'labels' and 'meta_*' keys), a list "
    "of samples (arrays or dicts), a path (.npz, .npy, .txt with a tokenizer, or a folder "
    "of .npz files or images), a torch Dataset or DataLoader, or a tf.data.Dataset"
)


def as_dataset(obj: Any, what: str = "data", *, batched: bool | None = None) -> Dataset:
    """``obj`` as a :class:`Dataset`; DataError naming ``what`` and the accepted kinds otherwise.

    * a :class:`Dataset` is returned as it is;
    * a NumPy array is the model's single input, samples on the first axis;
    * a dict of arrays follows the ``.npz`` conventions (``labels``, ``meta_*``);
    * a list or tuple holds samples (:meth:`Dataset.from_iterable`);
    * a ``str`` or path is read by :meth:`Dataset.from_path`;
    * a torch ``Dataset``/``DataLoader`` or a ``tf.data.Dataset`` is read through its own
      iteration, never importing the framework here. A DataLoader and a batched tf.data
      pipeline yield batches; ``batched=`` overrides that guess.

    Nothing is read now except what the chosen constructor reads (a list is counted).
    """
    if isinstance(obj, Dataset):
        return obj
    if isinstance(obj, str | os.PathLike):
        return Dataset.from_path(obj)
    if isinstance(obj, np.ndarray):
        return Dataset.from_arrays(obj)
    if isinstance(obj, Mapping):
        inputs, labels, meta = split_keys(obj, "labels", (), what)
        return Dataset.from_arrays(inputs, labels=labels, meta=meta)
    if isinstance(obj, list | tuple):
        if obj and _holds_tensors(obj[0]):  # torch/TF tensors, or (inputs, labels) pairs of them
            obj = [element_dict(item, f"element {i}") for i, item in enumerate(obj)]
        return Dataset.from_iterable(obj, batched=bool(batched))
    framework = framework_of(obj)
    if framework is not None:
        if is_tensor(obj):
            return Dataset.from_arrays(to_numpy(obj))
        return Dataset(framework_source(obj, framework, batched))
    raise DataError(f"cannot use a {type(obj).__module__}.{type(obj).__qualname__} as {what}; pass {ACCEPTED}")



def _holds_tensors(item: Any) -> bool:
    values = item.values() if isinstance(item, Mapping) else item if isinstance(item, list | tuple) else [item]
    return any(framework_of(v) is not None for v in values)
