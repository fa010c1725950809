"""Which source a path is: a folder of ``.npz``/``.npy`` files or of images, an ``.npz`` or
``.npy`` file, an image, or a ``.txt`` file of texts (:meth:`Dataset.from_path`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from quantscope.data.batch import Source
from quantscope.data.folders import folder_source
from quantscope.data.images import IMAGE_SUFFIXES, ImagePreprocess, image_source, list_images
from quantscope.data.sources import npz_source
from quantscope.data.texts import text_source
from quantscope.errors import ConfigError, DataError

_ARRAY_SUFFIXES: Final = (".npz", ".npy")
_DEFAULT_PREPROCESS: Final = ImagePreprocess()


def _folder(p: Path, o: dict[str, Any]) -> Source:
    return folder_source(
        p, o.get("pattern"), o.get("labels_key", "labels"), o.get("meta_keys", ()), o.get("max_bytes")
    )


def _npz(p: Path, o: dict[str, Any]) -> Source:
    return npz_source(p, o.get("labels_key", "labels"), o.get("meta_keys", ()), o.get("max_bytes"))


def _images(p: Path, o: dict[str, Any]) -> Source:
    images: Any = p if p.is_dir() else [p]
    return image_source(
        images, o.get("preprocess", _DEFAULT_PREPROCESS), o.get("transform"), o.get("labels")
    )


def _texts(p: Path, o: dict[str, Any]) -> Source:
    if "tokenizer" not in o:
        raise ConfigError(f"{p} is a text file: pass tokenizer= (a tokenizer.json) to tokenize it")
    return text_source(p, o["tokenizer"], o.get("max_length", 128), o.get("dtype", "int64"))


Kind = tuple[str, frozenset[str], Callable[[Path, dict[str, Any]], Source]]
_FOLDER: Final[Kind] = (
    "a folder", frozenset({"pattern", "labels_key", "meta_keys", "max_bytes"}), _folder
)
_IMAGE_OPTIONS: Final = frozenset({"preprocess", "transform", "labels"})


def holds_images(folder: Path) -> bool:
    """True when ``folder`` holds no ``.npz``/``.npy`` file directly, and images somewhere."""
    if any(p.suffix in _ARRAY_SUFFIXES for p in folder.iterdir() if p.is_file()):
        return False
    return bool(list_images(folder))


def _kind(p: Path, options: dict[str, Any]) -> Kind:
    suffix = p.suffix.lower()
    if p.is_dir():
        if "pattern" in options or not holds_images(p):
            return _FOLDER
        return ("an image folder", _IMAGE_OPTIONS, _images)
    if suffix in _ARRAY_SUFFIXES and p.exists():
        return (f"a {suffix} file", frozenset({"labels_key", "meta_keys", "max_bytes"}), _npz)
    if suffix in IMAGE_SUFFIXES and p.exists():
        return ("an image", _IMAGE_OPTIONS, _images)
    if suffix == ".txt" and p.exists():
        return ("a .txt file", frozenset({"tokenizer", "max_length", "dtype"}), _texts)
    if not p.exists():
        raise DataError(f"data path {p} does not exist")
    raise DataError(
        f"cannot read data from {p}: files ending in {p.suffix or '(no suffix)'!r} are not "
        "supported; use an .npz file, an .npy file or a folder of them, an image or a folder "
        "of images, or a .txt file of texts (with tokenizer=)"
    )


def path_source(path: str | Path, options: dict[str, Any]) -> Source:
    """The source of :meth:`Dataset.from_path`: picked by the path's kind, with its options."""
    p = Path(path)
    what, allowed, build = _kind(p, options)
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(f"from_path: option(s) {unknown} do not apply to {what}; it takes {sorted(allowed)}")
    return build(p, options)
