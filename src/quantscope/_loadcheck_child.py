"""The child side of :mod:`quantscope.loadcheck`: load one model in ONNX Runtime and run it once.

Run as a script (``runpy.run_path``) in a fresh interpreter, so it imports only the standard
library, NumPy and ONNX Runtime, never the quantscope package: it starts fast, and a crash in ONNX
Runtime kills this process, not the caller's. Arguments::

    MODEL LEVEL DISABLED [--verbose] [--sample FILE.npz]

or ``--stdin``: import NumPy and ONNX Runtime first, then read one JSON line
``{"argv": [...], "cwd": DIR}`` from stdin (how :mod:`quantscope._loadcheck_spawn` starts a child
ahead of need); end-of-file there ends the child quietly.

``LEVEL`` names a ``GraphOptimizationLevel`` member (``ORT_ENABLE_ALL``); ``DISABLED`` is a
comma-separated list of ONNX Runtime graph optimizers to disable (may be empty). With
``--verbose`` ONNX Runtime logs every optimizer it applies to stderr. The result is one JSON line
on stdout (``{"ok": true, "ran": ..., "detail": ...}``); exit status 0 when the session was
created, 1 when ONNX Runtime refused the model.

``QUANTSCOPE_LOADCHECK_TEST_HOOK`` (tests only) simulates a crash before loading: ``abort``,
``segv``, ``hang``, or ``segv-unless:NAME[+NAME...]`` (a crash unless every listed optimizer is
disabled; with ``--verbose`` each is logged the way ONNX Runtime logs the optimizers it applies,
the crash coming in the last).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

TEST_HOOK_ENV = "QUANTSCOPE_LOADCHECK_TEST_HOOK"

_DTYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(bfloat16)": "float32", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
    "tensor(int16)": "int16", "tensor(uint16)": "uint16", "tensor(int32)": "int32",
    "tensor(uint32)": "uint32", "tensor(int64)": "int64", "tensor(uint64)": "uint64",
    "tensor(bool)": "bool", "tensor(string)": "object",
}


def _test_hook(disabled: list[str], verbose: bool) -> None:
    hook = os.environ.get(TEST_HOOK_ENV, "")
    if hook == "abort":
        os.abort()
    if hook == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    if hook == "hang":
        time.sleep(3600)
    if hook.startswith("segv-unless:"):
        names = hook.split(":", 1)[1].split("+")
        if not all(n in disabled for n in names):
            if verbose:
                for name in names:
                    print(f"[V:onnxruntime:, fake] Applying graph transformer {name} on step 1.", file=sys.stderr)
                sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGSEGV)


def synthetic_feeds(inputs: list, seed: int = 0) -> dict:
    """One sample for ``session.get_inputs()``: symbolic dimensions become 1, floats small
    normal values, integers 0 (a valid index), booleans False, strings empty."""
    import numpy as np

    rng = np.random.default_rng(seed)
    feeds = {}
    for arg in inputs:
        dtype = _DTYPES.get(arg.type)
        if dtype is None:
            raise ValueError(f"input {arg.name!r} has type {arg.type}, which no synthetic sample is made for")
        shape = [d if isinstance(d, int) and d >= 0 else 1 for d in (arg.shape or [])]
        if dtype.startswith("float"):
            feeds[arg.name] = np.asarray(rng.standard_normal(shape) * 0.5, dtype=dtype)
        elif dtype == "object":
            feeds[arg.name] = np.full(shape, "", dtype=object)
        else:
            feeds[arg.name] = np.zeros(shape, dtype=dtype)
    return feeds


def main(argv: list[str]) -> int:
    model, level, disabled_arg, *rest = argv
    disabled = [d for d in disabled_arg.split(",") if d]
    verbose = "--verbose" in rest
    sample = rest[rest.index("--sample") + 1] if "--sample" in rest else None
    _test_hook(disabled, verbose)

    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    if verbose:
        options.log_severity_level = 0
        options.log_verbosity_level = 1
    try:
        session = ort.InferenceSession(
            model, sess_options=options, providers=["CPUExecutionProvider"], disabled_optimizers=disabled
        )
    except Exception as exc:  # ONNX Runtime refused the model: not a crash, tell the parent why
        print(json.dumps({"ok": False, "ran": False, "detail": f"{type(exc).__name__}: {exc}"}))
        return 1
    try:
        if sample is not None:
            with np.load(sample, allow_pickle=False) as data:
                feeds = {k: data[k] for k in data.files}
        else:
            feeds = synthetic_feeds(session.get_inputs())
        outputs = session.run(None, feeds)
    except Exception as exc:  # loaded, but a synthetic sample may not suit the model
        print(json.dumps({"ok": True, "ran": False, "detail": f"{type(exc).__name__}: {exc}"}))
        return 0
    shapes = [list(np.shape(o)) for o in outputs]
    print(json.dumps({"ok": True, "ran": True, "detail": f"output shapes {shapes}"}))
    return 0


def _from_stdin() -> list[str] | None:
    """The arguments sent on stdin once the heavy imports are done (None: the caller went away)."""
    import numpy  # noqa: F401  (imported while the caller works, not after it asks)
    import onnxruntime  # noqa: F401

    line = sys.stdin.readline()
    if not line.strip():
        return None
    request = json.loads(line)
    os.chdir(request["cwd"])
    return [str(a) for a in request["argv"]]


if __name__ == "__main__":
    args = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    if args == ["--stdin"]:
        args = _from_stdin()
    sys.exit(0 if args is None else main(args))
