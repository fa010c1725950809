"""Tests of the data checks: NaN and infinity detection, named by sample."""

from __future__ import annotations

import numpy as np
import pytest
from data_helpers import collect

from quantscope.data import Dataset
from quantscope.errors import NonFiniteDataError


def test_nan_detection_names_the_sample(data: dict[str, np.ndarray]) -> None:
    x = data["x"].copy()
    x[6, 0, :3] = np.nan
    x[6, 1, 0] = np.inf
    ds = Dataset.from_arrays({"x": x, "ids": data["ids"]}, labels=np.arange(10))
    assert len(collect(ds)) == 3  # unchecked by default
    with pytest.raises(NonFiniteDataError) as info:
        collect(ds, 4, require_finite=True)
    message = str(info.value)
    assert "'x'" in message and "sample 6" in message
    assert "3 NaN" in message and "1 infinite" in message
    with pytest.raises(NonFiniteDataError, match="sample 6"):
        ds.check_finite()

    sub = next(s for s in (ds.take(4, seed=k) for k in range(100)) if 6 in s.labels)
    position = int(np.flatnonzero(sub.labels == 6)[0])
    with pytest.raises(NonFiniteDataError, match=rf"sample {position} \(sample 6 of the source\)"):
        collect(sub, 2, require_finite=True)

    clean = Dataset.from_arrays({"x": data["x"], "ids": data["ids"]})
    clean.check_finite()
    with pytest.raises(NonFiniteDataError, match="sample 0"):
        clean.map(lambda d: {"x": d["x"] * np.inf, "ids": d["ids"]}).check_finite()
