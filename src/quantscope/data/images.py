"""Images as a source: a folder (recursive), a list of paths, or class sub-folders as labels.

The common preprocessing is declared in one small frozen config, :class:`ImagePreprocess`
(resize the short side, centre crop, scale, mean/std, layout, grey or RGB, dtype); a
``transform`` hook does anything else. Only paths are listed up front; every image is
decoded when its sample is batched (streamed from disk), with Pillow, imported then.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np

from quantscope.data.batch import Chunk, Source
from quantscope.data.checks import UNNAMED, as_array
from quantscope.errors import ConfigError, DataError, EmptyDatasetError

if TYPE_CHECKING:
    from PIL.Image import Image

IMAGE_SUFFIXES: Final = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
_DTYPES: Final = ("float32", "float16", "float64", "uint8", "int8")
_IMAGENET_MEAN: Final = (0.485, 0.456, 0.406)
_IMAGENET_STD: Final = (0.229, 0.224, 0.225)

Transform = Callable[[Any], Any]


def _pair(value: int | Sequence[int] | None, what: str) -> tuple[int, int] | None:
    if value is None:
        return None
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pair):
        raise ConfigError(f"ImagePreprocess.{what} must be a positive int or (height, width), got {value!r}")
    return (int(pair[0]), int(pair[1]))


@dataclass(frozen=True, kw_only=True)
class ImagePreprocess:
    """The preprocessing of every image, in this order:

    decode → ``color`` (``"rgb"`` or ``"grey"``) → ``resize`` (the short side to this many
    pixels, keeping the aspect ratio) → ``center_crop`` (``size`` or ``(height, width)``) →
    multiply by ``scale`` → subtract ``mean`` and divide by ``std`` (per channel) → ``layout``
    (``"NCHW"``: a sample is ``(C, H, W)``; ``"NHWC"``: ``(H, W, C)``) → ``dtype``.
    The default gives float32 RGB in [0, 1], CHW, at the image's own size.
    """

    resize: int | None = None
    center_crop: int | tuple[int, int] | None = None
    scale: float = 1 / 255
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    color: Literal["rgb", "grey"] = "rgb"
    dtype: str = "float32"
    interpolation: Literal["bilinear", "bicubic", "nearest"] = "bilinear"

    def __post_init__(self) -> None:
        if self.resize is not None:
            _pair(self.resize, "resize")
            if not isinstance(self.resize, int):
                raise ConfigError("ImagePreprocess.resize is the short side: one int")
        object.__setattr__(self, "center_crop", _pair(self.center_crop, "center_crop"))
        choices = {
            "layout": ("NCHW", "NHWC"),
            "color": ("rgb", "grey"),
            "dtype": _DTYPES,
            "interpolation": ("bilinear", "bicubic", "nearest"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"ImagePreprocess.{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")
        if isinstance(self.scale, bool) or not isinstance(self.scale, int | float) or not math.isfinite(self.scale) or self.scale <= 0:
            raise ConfigError(f"ImagePreprocess.scale must be a positive number, got {self.scale!r}")
        channels = 3 if self.color == "rgb" else 1
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is None:
                continue
            values = (value,) if isinstance(value, int | float) else tuple(value)
            if len(values) not in (1, channels) or not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
                raise ConfigError(f"ImagePreprocess.{name} needs 1 or {channels} finite numbers, got {value!r}")
            if name == "std" and any(v == 0 for v in values):
                raise ConfigError("ImagePreprocess.std must not hold 0")
            object.__setattr__(self, name, tuple(float(v) for v in values))
        if np.dtype(self.dtype).kind in "iu" and (self.scale != 1 or self.mean or self.std):
            raise ConfigError(
                f"ImagePreprocess.dtype {self.dtype!r} keeps raw pixel values: set scale=1 and no mean/std"
            )

    @classmethod
    def imagenet(cls, size: int = 224, **changes: Any) -> ImagePreprocess:
        """The usual ImageNet preprocessing: resize to ``size * 8/7``, crop ``size``, mean/std."""
        fields: dict[str, Any] = {
            "resize": round(size * 256 / 224), "center_crop": size,
            "mean": _IMAGENET_MEAN, "std": _IMAGENET_STD,
        }  # fmt: skip
        return cls(**{**fields, **changes})

    def apply(self, image: Image, where: str = "the image") -> np.ndarray:
        """One decoded image as one sample (without the sample axis)."""
        from PIL import Image as PILImage

        image = image.convert("RGB" if self.color == "rgb" else "L")
        methods = {"bilinear": PILImage.BILINEAR, "bicubic": PILImage.BICUBIC, "nearest": PILImage.NEAREST}
        if self.resize is not None:
            w, h = image.size
            short = min(w, h)
            size = (self.resize, int(self.resize * h / w)) if w == short else (int(self.resize * w / h), self.resize)
            image = image.resize(size, methods[self.interpolation])
        if self.center_crop is not None:
            ch, cw = self.center_crop
            w, h = image.size
            if ch > h or cw > w:
                raise DataError(
                    f"{where} is {w}x{h} (width x height) after resizing, smaller than center_crop "
                    f"{cw}x{ch}; set ImagePreprocess(resize=...) to at least the crop size"
                )
            top, left = round((h - ch) / 2), round((w - cw) / 2)
            image = image.crop((left, top, left + cw, top + ch))
        arr = np.asarray(image)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        out = arr.astype(np.float64 if np.dtype(self.dtype).kind == "f" else arr.dtype)
        if self.scale != 1:
            out = out * self.scale
        if self.mean is not None:
            out = out - np.asarray(self.mean)
        if self.std is not None:
            out = out / np.asarray(self.std)
        if self.layout == "NCHW":
            out = np.transpose(out, (2, 0, 1))
        return np.ascontiguousarray(out, dtype=self.dtype)


def list_images(root: Path) -> list[Path]:
    """Image files under ``root`` (recursive, hidden entries skipped), sorted by relative path."""
    found = [
        p for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]  # fmt: skip
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _image_files(images: Any) -> tuple[list[Path], Path | None]:
    """The files to read and the folder they were found in (None for a list of paths)."""
    if isinstance(images, str | Path):
        root = Path(images)
        if root.is_dir():
            files = list_images(root)
            if not files:
                raise EmptyDatasetError(
                    f"image folder {root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
                )
            return files, root
        images = [root]
    if isinstance(images, bytes) or not isinstance(images, Sequence):
        raise ConfigError(f"from_images takes a folder or a list of image paths, got {type(images).__name__}")
    files = [Path(p) for p in images]
    if not files:
        raise EmptyDatasetError("from_images got an empty list of images")
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise DataError(f"image file(s) not found: {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    return files, None


def _folder_labels(files: list[Path], root: Path | None) -> tuple[np.ndarray, tuple[str, ...]]:
    if root is None:
        raise ConfigError('labels="folders" needs a folder of class sub-folders, not a list of paths')
    names = [p.relative_to(root).parts[0] if len(p.relative_to(root).parts) > 1 else None for p in files]
    loose = [files[i].name for i, n in enumerate(names) if n is None]
    if loose:
        raise DataError(
            f'labels="folders": {root} holds images outside class sub-folders ({loose[:3]}); '
            "put every image in a sub-folder named after its class"
        )
    classes = tuple(sorted({str(n) for n in names}))
    index = {name: i for i, name in enumerate(classes)}
    return np.array([index[str(n)] for n in names], dtype=np.int64), classes


def _read(path: Path, preprocess: ImagePreprocess | None, transform: Transform | None) -> np.ndarray:
    from PIL import Image as PILImage

    try:
        with PILImage.open(path) as image:
            image.load()
            if preprocess is None:
                assert transform is not None
                return as_array(transform(image), f"transform's result for image {path}")
            sample = preprocess.apply(image, f"image {path}")
    except (PILImage.UnidentifiedImageError, PILImage.DecompressionBombError, OSError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from exc
    if transform is not None:
        sample = as_array(transform(sample), f"transform's result for image {path}")
    return sample


def image_source(
    images: Any,
    preprocess: ImagePreprocess | None,
    transform: Transform | None,
    labels: Any,
) -> Source:
    """The source of :meth:`Dataset.from_images` (one chunk per image, decoded when batched)."""
    if preprocess is not None and not isinstance(preprocess, ImagePreprocess):
        raise ConfigError(f"preprocess must be an ImagePreprocess or None, got {type(preprocess).__name__}")
    if transform is not None and not callable(transform):
        raise ConfigError(f"transform must be a function, got {type(transform).__name__}")
    if preprocess is None and transform is None:
        raise ConfigError("preprocess=None needs a transform(image) -> array that does all the preprocessing")
    files, root = _image_files(images)
    classes: tuple[str, ...] | None = None
    if isinstance(labels, str):
        if labels != "folders":
            raise ConfigError(f'labels must be "folders", a sequence of class indices or None, got {labels!r}')
        label_array, classes = _folder_labels(files, root)
    elif labels is not None:
        label_array = np.asarray(labels)
        if label_array.shape[:1] != (len(files),):
            raise DataError(f"{len(files)} images but labels of shape {label_array.shape}")
    where = f"image folder {root}" if root is not None else f"list of {len(files)} images"

    def chunk(i: int, path: Path) -> Chunk:
        def load(kind: str) -> Any:
            if kind == "inputs":
                return {UNNAMED: _read(path, preprocess, transform)[None]}
            if kind == "labels":
                return None if labels is None else label_array[i : i + 1]
            return {} if classes is None else {"class": np.array([classes[label_array[i]]])}

        def describe(_row: int) -> str:
            return f"image {path.relative_to(root) if root is not None else path}"

        return Chunk(1, load, describe)

    def chunks() -> Iterator[Chunk]:
        for i, path in enumerate(files):
            yield chunk(i, path)

    return Source(where, len(files), (UNNAMED,), labels is not None, chunks, classes=classes)
