"""PyTorch and TensorFlow data as sources, recognised without importing either framework.

An object is PyTorch's when a class in its type's MRO comes from a ``torch`` module, and
TensorFlow's likewise for ``tensorflow``; nothing here imports torch or tensorflow (the
object's own methods do the work). Elements are converted as follows: a tensor is the
model's single input; a pair ``(inputs, labels)`` gives inputs and labels; a dict maps
input names (and ``labels``, ``meta_*``) to tensors.

Data is read more than once (peeked, calibrated, evaluated), and the passes must agree:
shuffling loaders and datasets are refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from quantscope.data.batch import Chunk, Source
from quantscope.data.checks import UNNAMED
from quantscope.data.iterables import element_chunk, iterable_source
from quantscope.errors import ConfigError, DataError


def framework_of(obj: Any) -> str | None:
    """``"torch"`` or ``"tensorflow"`` when a class of ``obj``'s type comes from there, else None."""
    for cls in type(obj).__mro__:
        root = (cls.__module__ or "").split(".")[0]
        if root in ("torch", "tensorflow", "keras"):
            return "torch" if root == "torch" else "tensorflow"
    return None


def _class_names(obj: Any) -> set[str]:
    return {cls.__name__ for cls in type(obj).__mro__}


def is_tensor(obj: Any) -> bool:
    """True for a torch or TensorFlow tensor (not a dataset or loader)."""
    framework = framework_of(obj)
    if framework == "torch":
        return hasattr(obj, "detach")
    return framework == "tensorflow" and hasattr(obj, "numpy") and not hasattr(obj, "element_spec")


def to_numpy(value: Any) -> Any:
    """A framework tensor as a NumPy array (other values are returned as they are)."""
    if framework_of(value) == "torch" and hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    if framework_of(value) == "tensorflow" and hasattr(value, "numpy"):
        return value.numpy()
    return value


def element_dict(item: Any, where: str) -> Any:
    """One framework element as a dict (or a bare array: the model's single input)."""
    if isinstance(item, Mapping):
        return {k: to_numpy(v) for k, v in item.items()}
    if isinstance(item, tuple | list):
        if len(item) == 1:
            return to_numpy(item[0])
        if len(item) == 2 and not isinstance(item[0], Mapping):
            return {UNNAMED: to_numpy(item[0]), "labels": to_numpy(item[1])}
        if len(item) == 2:
            return {**{k: to_numpy(v) for k, v in item[0].items()}, "labels": to_numpy(item[1])}
        raise DataError(
            f"{where} is a tuple of {len(item)} values; quantscope reads a tensor, a pair "
            "(inputs, labels), or a dict {input name: tensor, 'labels': ...}: return a dict "
            "to name several inputs"
        )
    return to_numpy(item)


def _torch_loader_shuffles(loader: Any) -> bool:
    sampler = getattr(loader, "sampler", None)
    batch_sampler = getattr(loader, "batch_sampler", None)
    inner = getattr(batch_sampler, "sampler", None)
    return any("RandomSampler" in _class_names(s) for s in (sampler, inner) if s is not None)


def _tf_chain(ds: Any) -> Iterator[Any]:
    """``ds`` and the datasets it was made from (``ds.batch(8).prefetch(1)`` → three)."""
    seen = 0
    while ds is not None and seen < 1000:
        yield ds
        seen += 1
        ds = getattr(ds, "_input_dataset", None)


def _tf_batched_and_shuffled(ds: Any) -> tuple[bool, bool]:
    """Whether the pipeline's elements are batches, and whether it reshuffles on every pass."""
    batched: bool | None = None
    shuffled = False
    for node in _tf_chain(ds):
        name = type(node).__name__
        if batched is None and "Unbatch" in name:
            batched = False
        elif batched is None and "Batch" in name:
            batched = True
        if "Shuffle" in name and getattr(node, "_reshuffle_each_iteration", True) is not False:
            shuffled = True
    return bool(batched), shuffled


def _refuse_shuffle(what: str, fix: str) -> ConfigError:
    return ConfigError(
        f"{what} shuffles, so every pass over it gives the samples in another order; quantscope "
        f"reads the data more than once and compares the passes sample by sample: {fix}"
    )


def _indexed_source(ds: Any, description: str) -> Source:
    """A map-style torch dataset: ``len`` known, ``ds[i]`` read only when its sample is batched."""
    try:
        n = len(ds)
    except TypeError as exc:
        raise ConfigError(f"{description} has no length: {exc}") from exc

    def chunks() -> Iterator[Chunk]:
        for i in range(n):
            yield element_chunk(lambda i=i: element_dict(ds[i], f"item {i}"), i)

    return Source(description, n, None, None, chunks)


def framework_source(obj: Any, framework: str, batched: bool | None) -> Source:
    """The source of a torch ``Dataset``/``DataLoader`` or a ``tf.data.Dataset``."""
    names = _class_names(obj)
    if framework == "torch" and "DataLoader" in names:
        if _torch_loader_shuffles(obj):
            raise _refuse_shuffle("the DataLoader", "build it with shuffle=False")
        if batched is None:
            batched = getattr(obj, "batch_size", 1) is not None
        return _iterable(lambda: iter(obj), batched, "torch DataLoader")
    if framework == "torch" and "IterableDataset" in names:
        return _iterable(lambda: iter(obj), bool(batched), "torch IterableDataset")
    if framework == "torch" and hasattr(obj, "__getitem__") and hasattr(obj, "__len__"):
        if batched:
            raise ConfigError("a map-style torch Dataset yields samples; batched=True does not apply")
        return _indexed_source(obj, f"torch {type(obj).__name__} dataset")
    if framework == "tensorflow" and hasattr(obj, "element_spec"):
        chain_batched, shuffled = _tf_batched_and_shuffled(obj)
        if shuffled:
            raise _refuse_shuffle(
                "the tf.data.Dataset", "drop .shuffle(), or pass reshuffle_each_iteration=False"
            )
        kind = chain_batched if batched is None else batched
        return _iterable(lambda: iter(obj), kind, "tf.data.Dataset")
    raise ConfigError(
        f"cannot read data from a {framework} {type(obj).__name__}: quantscope takes a torch "
        "Dataset or DataLoader, or a tf.data.Dataset"
    )


def _iterable(make: Callable[[], Iterator[Any]], batched: bool, description: str) -> Source:
    def elements() -> Iterator[Any]:
        for index, item in enumerate(make()):
            yield element_dict(item, f"element {index} of the {description}")

    source = iterable_source(elements, batched, "labels", ())
    return Source(description, source.num_samples, None, None, source.chunks, source.warned)
