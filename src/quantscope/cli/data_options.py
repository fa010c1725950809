"""The data options shared by every command that reads data: how images and texts become samples.

``.npz`` files and folders of them need no option. A folder of images (or one image) is read
by :meth:`quantscope.Dataset.from_images` with the :class:`~quantscope.data.ImagePreprocess`
the image options declare; a ``.txt`` file (one text per line) by
:meth:`~quantscope.Dataset.from_texts` with ``--tokenizer``. The same options apply to
``--calib`` and ``--data`` of one command.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from quantscope.errors import ConfigError

F = Callable[..., Any]
PREFIX = "data_opt_"
IMAGE_FLAGS = ("--image-size", "--crop", "--mean", "--std", "--scale", "--layout", "--grey", "--labels")
TEXT_FLAGS = ("--tokenizer", "--max-length")


@dataclass(frozen=True)
class DataOptions:
    """What the data options say: image preprocessing and labels, tokenizer and length."""

    image_size: int | None = None
    crop: str | None = None
    mean: str | None = None
    std: str | None = None
    scale: float | None = None
    layout: str | None = None
    grey: bool = False
    labels: str | None = None
    tokenizer: Path | None = None
    max_length: int | None = None

    def given(self, flags: tuple[str, ...]) -> list[str]:
        """Which of ``flags`` were given on the command line."""
        return [flag for flag in flags if getattr(self, flag[2:].replace("-", "_")) not in (None, False)]

    def source_options(self) -> dict[str, Any]:
        """Keyword arguments of :meth:`quantscope.Dataset.from_path` for these options."""
        from quantscope.cli.options import parse_floats
        from quantscope.data import ImagePreprocess

        out: dict[str, Any] = {}
        if self.given(IMAGE_FLAGS[:-1]):
            crop = parse_floats(self.crop, "--crop")
            if crop is not None and len(crop) not in (1, 2):
                raise ConfigError(f"--crop takes SIZE or HEIGHT,WIDTH, got {self.crop!r}")
            fields: dict[str, Any] = {
                "resize": self.image_size,
                "center_crop": None if crop is None else int(crop[0]) if len(crop) == 1 else (int(crop[0]), int(crop[1])),
                "mean": _triple(self.mean, "--mean"),
                "std": _triple(self.std, "--std"),
                "color": "grey" if self.grey else "rgb",
            }
            if self.scale is not None:
                fields["scale"] = self.scale
            if self.layout is not None:
                fields["layout"] = self.layout
            out["preprocess"] = ImagePreprocess(**fields)
        if self.labels is not None:
            out["labels"] = self.labels
        if self.tokenizer is not None:
            out["tokenizer"] = str(self.tokenizer)
        if self.max_length is not None:
            out["max_length"] = self.max_length
        return out


def _triple(text: str | None, flag: str) -> tuple[float, ...] | None:
    from quantscope.cli.options import parse_floats

    values = parse_floats(text, flag)
    return None if values is None else tuple(values)


def read_dataset(path: Path, options: DataOptions | None, what: str) -> Any:
    """The dataset in ``path``, read with ``options``; exit 3 when an option does not fit the data."""
    import quantscope as qs

    kwargs = options.source_options() if options is not None else {}
    try:
        return qs.Dataset.from_path(path, **kwargs)
    except ConfigError as exc:
        if not kwargs or "do not apply" not in str(exc):
            raise
        flags = options.given(IMAGE_FLAGS + TEXT_FLAGS) if options is not None else []
        raise ConfigError(
            f"{', '.join(flags)} do not apply to {what} {path}: image options read a folder of images or an "
            f"image, --tokenizer/--max-length a .txt file of texts ({exc})"
        ) from exc


def data_options(*, layout: bool = True) -> Callable[[F], F]:
    """Add the image and text options; the command receives them as one ``data_options`` argument.

    ``layout=False`` leaves ``--layout`` out (``robustness`` has its own, passed on to the data).
    """
    options = [
        click.option("--image-size", f"{PREFIX}image_size", type=click.IntRange(min=1), metavar="N",
                     help="Images: resize the short side to N pixels (keeps the aspect ratio)."),
        click.option("--crop", f"{PREFIX}crop", metavar="SIZE|H,W", help="Images: centre crop to SIZE or H,W."),
        click.option("--mean", f"{PREFIX}mean", metavar="R,G,B", help="Images: subtract this per channel (after --scale)."),
        click.option("--std", f"{PREFIX}std", metavar="R,G,B", help="Images: divide by this per channel."),
        click.option("--scale", f"{PREFIX}scale", type=float,
                     help="Images: multiply pixel values (0..255) by this first.  [default: 1/255]"),
        *([click.option("--layout", f"{PREFIX}layout", type=click.Choice(["NCHW", "NHWC"]),
                        help="Images: sample layout.  [default: NCHW]")] if layout else []),
        click.option("--grey", f"{PREFIX}grey", is_flag=True, help="Images: one grey channel instead of RGB."),
        click.option("--labels", f"{PREFIX}labels", type=click.Choice(["folders"]),
                     help="Images: label each image by its class sub-folder (sorted names → 0, 1, ...)."),
        click.option("--tokenizer", f"{PREFIX}tokenizer", type=click.Path(path_type=Path, readable=False),
                     help="Texts (.txt, one per line): tokenize with this tokenizer.json."),
        click.option("--max-length", f"{PREFIX}max_length", type=click.IntRange(min=1),
                     help="Texts: truncate and pad to this many tokens.  [default: 128]"),
    ]

    def decorate(f: F) -> F:
        @functools.wraps(f)
        def command(*args: Any, **kwargs: Any) -> Any:
            picked = {k.removeprefix(PREFIX): kwargs.pop(k) for k in list(kwargs) if k.startswith(PREFIX)}
            return f(*args, data_options=DataOptions(**picked), **kwargs)

        for option in reversed(options):
            command = option(command)
        return command

    return decorate
