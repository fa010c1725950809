"""Datasets that feed models during calibration and evaluation.

A :class:`Dataset` is a source of samples (arrays, an ``.npz`` file, a folder of
them, a Python iterable) plus per-batch transforms (``map``, ``bind``): immutable,
re-iterable and deterministic. The modules:

* :mod:`~quantscope.data.dataset` - the :class:`Dataset` itself;
* :mod:`~quantscope.data.sources` - in-memory arrays and ``.npz`` files, key conventions;
* :mod:`~quantscope.data.folders` - folders of ``.npz``/``.npy`` files, streamed;
* :mod:`~quantscope.data.iterables` - lists, re-iterables and callables of samples;
* :mod:`~quantscope.data.frameworks` - torch datasets and loaders, ``tf.data`` datasets;
* :mod:`~quantscope.data.adapt` - :func:`as_dataset`, whatever the user passes as data;
* :mod:`~quantscope.data.binding` - binding data to the model's input names and dtypes;
* :mod:`~quantscope.data.feeding` - samples as the model takes them: batch axis, fixed
  batch sizes, scalars, whole feeds;
* :mod:`~quantscope.data.batch` - :class:`Batch` and how sources are cut into batches;
* :mod:`~quantscope.data.checks` - validation helpers and ``.npy``/``.npz`` headers.
"""

from __future__ import annotations

from quantscope.data.adapt import as_dataset
from quantscope.data.batch import Batch
from quantscope.data.checks import UNNAMED
from quantscope.data.dataset import Dataset
from quantscope.data.sources import META_PREFIX

__all__ = ["META_PREFIX", "UNNAMED", "Batch", "Dataset", "as_dataset"]
