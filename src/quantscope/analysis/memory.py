"""Peak memory of loading and running a model, measured in a fresh process (not estimated).

A child Python process imports ONNX Runtime, reads the input batch, notes its resident set
size (the baseline), resets the kernel's high-water mark, creates a session on the model file
(same options as every other quantscope session) and runs it once. The peak is the kernel's
high-water mark of resident memory (``VmHWM``) after the run, so it covers the session's
initialization (where ONNX Runtime folds constants and pre-packs weights) and the inference.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from quantscope.analysis.results import MemoryResult
from quantscope.errors import ModelError, RuntimeFailure
from quantscope.signals import temp_dir

logger = logging.getLogger(__name__)

_CHILD = r"""
import json, sys

def status(key):
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

model_path, feeds_path, threads = sys.argv[1], sys.argv[2], sys.argv[3]
import numpy as np
import onnxruntime as ort
with np.load(feeds_path, allow_pickle=False) as z:
    feeds = {k: np.array(z[k]) for k in z.files}
baseline = status("VmRSS")
try:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the high-water mark to the current resident size
except OSError:
    pass
# the options of quantscope.runtime.session_options (importing quantscope would cost a second)
opts = ort.SessionOptions()
opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
opts.log_severity_level = 3
if threads != "all":
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
session = ort.InferenceSession(model_path, sess_options=opts, providers=["CPUExecutionProvider"])
session.run(None, feeds)
print(json.dumps({"baseline": baseline, "peak": max(status("VmHWM"), status("VmRSS"))}))
"""


def peak_memory(
    model_path: str | os.PathLike[str],
    feeds: Mapping[str, np.ndarray],
    *,
    threads: int | None = 1,
    timeout: float = 600.0,
) -> MemoryResult:
    """Peak resident memory (MiB) of a fresh process that loads ``model_path`` and runs ``feeds``."""
    path = Path(model_path)
    if not path.is_file():
        raise ModelError(f"model file not found for the memory measurement: {path}")
    batch = int(next(iter(feeds.values())).shape[0]) if feeds else 0
    with temp_dir(prefix="quantscope-mem-") as tmp:
        feeds_path = Path(tmp) / "feeds.npz"
        np.savez(feeds_path, **{k: np.asarray(v) for k, v in feeds.items()})
        cmd = [sys.executable, "-c", _CHILD, str(path), str(feeds_path), "all" if threads is None else str(threads)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeFailure(f"measuring the memory of {path.name} took over {timeout:.0f} s; "
                                 "skip it (--no-memory) or use a smaller batch") from exc
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeFailure(f"the memory measurement of {path.name} failed in its child process: {tail}")
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError) as exc:
        raise RuntimeFailure(f"the memory measurement of {path.name} printed no result: {proc.stdout!r}") from exc
    logger.debug("memory of %s: %s", path.name, result)
    return MemoryResult(peak_rss_mb=float(result["peak"]), baseline_rss_mb=float(result["baseline"]), batch=batch)
