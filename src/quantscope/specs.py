"""What a model expects of one input or gives as one output: name, dtype, shape."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Dim = int | str | None
"""A dimension: a fixed size, a symbolic name (dynamic, e.g. ``"batch"``), or unknown."""


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """Name, element type and shape of a model input or output."""

    name: str
    dtype: np.dtype
    shape: tuple[Dim, ...] | None  # None: rank unknown

    def describe(self) -> str:
        dims = "?" if self.shape is None else ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}: {np.dtype(self.dtype).name}[{dims}]"

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "dtype": np.dtype(self.dtype).name,
            "shape": None if self.shape is None else list(self.shape),
        }
