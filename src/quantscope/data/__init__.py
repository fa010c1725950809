"""Datasets that feed models during calibration and evaluation.

A :class:`Dataset` is a source of samples (arrays, an ``.npz`` file, a folder of
them, images, texts, a Python iterable, a torch or tf.data pipeline) plus per-batch transforms (``map``, ``bind``): immutable,
re-iterable and deterministic. The modules:

* :mod:`~quantscope.data.dataset` - the :class:`Dataset` itself;
* :mod:`~quantscope.data.sources` - in-memory arrays and ``.npz`` files, key conventions;
* :mod:`~quantscope.data.folders` - folders of ``.npz``/``.npy`` files, streamed;
* :mod:`~quantscope.data.iterables` - lists, re-iterables and callables of samples;
* :mod:`~quantscope.data.images` - images (folders, class sub-folders, lists), :class:`ImagePreprocess`;
* :mod:`~quantscope.data.texts` - texts tokenized with a ``tokenizer.json``;
* :mod:`~quantscope.data.paths` - which source a path is (:meth:`Dataset.from_path`);
* :mod:`~quantscope.data.frameworks` - torch datasets and loaders, ``tf.data`` datasets;
* :mod:`~quantscope.data.adapt` - :func:`as_dataset`, whatever the user passes as data;
* :mod:`~quantscope.data.binding` - binding data to the model's input names and dtypes;
* :mod:`~quantscope.data.feeding` - samples as the model takes them: batch axis, fixed
  batch sizes, scalars, whole feeds;
* :mod:`~quantscope.data.batch` - :class:`Batch` and how sources are cut into batches;
* :mod:`~quantscope.data.checks` - validation helpers and ``.npy``/``.npz`` headers;
* :mod:`~quantscope.data.limits` - what a data file may make us read, checked before reading;
* :mod:`~quantscope.data.labels` - labels as class indices, :func:`check_labels`.
"""

from __future__ import annotations

from quantscope.data.adapt import as_dataset
from quantscope.data.batch import Batch
from quantscope.data.checks import UNNAMED
from quantscope.data.dataset import Dataset
from quantscope.data.images import ImagePreprocess
from quantscope.data.labels import check_labels
from quantscope.data.sources import META_PREFIX

__all__ = [
    "META_PREFIX",
    "UNNAMED",
    "Batch",
    "Dataset",
    "ImagePreprocess",
    "as_dataset",
    "check_labels",
]
