"""Large new weights spilled to temporary files: owned folder names, files gone with their tensors."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import onnx_ir as ir

from quantscope import leftovers, spill


def test_a_large_tensor_goes_to_an_owned_file_removed_with_it(monkeypatch) -> None:
    monkeypatch.setattr(spill, "SPILL_BYTES", 1024)
    small = ir.tensor(np.ones(16, np.float32), name="small")
    assert spill.spill(small) is small  # below the threshold: kept in memory
    values = np.arange(4096, dtype=np.float32).reshape(64, 64)
    spilled = spill.spill(ir.tensor(values, name="big"))
    assert isinstance(spilled, spill.SpilledTensor)
    np.testing.assert_array_equal(spilled.numpy(), values)
    path = Path(spilled.base_dir) / spilled.location
    assert path.is_file()
    # the folder's name carries this process as its owner, so a run after a SIGKILL removes it
    assert Path(spilled.base_dir).name.startswith(leftovers.owned_prefix("quantscope-spill-"))
    del spilled
    gc.collect()
    assert not path.exists()
