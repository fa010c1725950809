"""Peak memory of every method on a model whose weights live in external data.

A model with one large fp32 MatMul weight (``--largest-mib``, 1 GiB by default) and two smaller
ones (a quarter and a sixty-fourth of it) is written to a temporary folder as a sparse external
data file (a little random data at the start of each tensor, zeros elsewhere: little disk for the
input). Each method then runs ``quantize`` + ``save`` (or ``inspect``) in a fresh Python process,
which reports its peak resident memory (``VmHWM`` from ``/proc/self/status``), its resident
memory after the imports (the baseline) and the peak of its child processes (the load check's
ONNX Runtime child; sampled every 50 ms with psutil). The table shows ``(peak - baseline) /
largest tensor``; the target is at most 2 (the largest tensor twice, plus the model structure).

Usage::

    python -m bench.memory [--largest-mib 1024] [--methods weight-int8 float16 ...] [--out memory.json]

Nothing is asserted here; ``tests/reliability/test_rel_large_model.py`` asserts the bound.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

METHODS = ("inspect", "weight-int8", "weight-int4", "float16", "dynamic-int8", "static-int8", "cluster")

CHILD = r"""
import json, sys, threading, time
import psutil

def status(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0

import numpy as np
import quantscope as qs
from quantscope.inspection import inspect_model
import quantscope.quantization, quantscope.loadcheck, onnxruntime  # the imports count as baseline

method, model, out = sys.argv[1], sys.argv[2], sys.argv[3]
children_peak = 0

def watch():  # the load check's child: its resident memory, sampled
    global children_peak
    me = psutil.Process()
    while True:
        for child in me.children(recursive=True):
            try:
                children_peak = max(children_peak, child.memory_info().rss)
            except psutil.Error:
                pass
        time.sleep(0.05)

threading.Thread(target=watch, daemon=True).start()
baseline = status("VmRSS")
if method == "inspect":
    inspect_model(model)
else:
    configs = {
        "weight-int8": qs.WeightInt8(), "weight-int4": qs.WeightInt4(), "float16": qs.Float16(),
        "dynamic-int8": qs.DynamicInt8(), "static-int8": qs.StaticInt8(measure=False, num_samples=4),
        "cluster": qs.Cluster(),
    }
    data = None
    loaded = qs.load(model)
    if method == "static-int8":
        spec = loaded.inputs[0]
        rng = np.random.default_rng(0)
        data = qs.Dataset.from_arrays({spec.name: rng.standard_normal((4, *spec.shape[1:])).astype(np.float32)})
    qs.quantize(loaded, configs[method], data).save(out)
print(json.dumps({
    "baseline": baseline,
    "peak": status("VmHWM"),
    "children_peak": children_peak,
}))
"""


def build_model(folder: Path, largest_bytes: int) -> tuple[Path, int]:
    """A MatMul chain over three fp32 weights in one sparse external data file; (path, largest tensor bytes)."""
    import onnx
    from onnx import TensorProto, helper

    k = 4096
    while k * k * 4 < largest_bytes:  # the largest weight is [k, k]; the others [k, k/4] and [k/4, k/16]
        k *= 2
    shapes = [(k, k), (k, k // 4), (k // 4, max(k // 16, 1))]
    rng = np.random.default_rng(0)
    tensors, offset = [], 0
    data = folder / "model.onnx.data"
    with open(data, "wb") as fh:
        for i, shape in enumerate(shapes):
            size = int(np.prod(shape)) * 4
            fh.seek(offset)
            fh.write(rng.standard_normal(min(16384, size // 4)).astype(np.float32).tobytes())
            tensor = TensorProto(name=f"w{i}", data_type=TensorProto.FLOAT, dims=list(shape),
                                 data_location=TensorProto.EXTERNAL)
            for key, value in (("location", data.name), ("offset", str(offset)), ("length", str(size))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
            tensors.append(tensor)
            offset += -(-size // 4096) * 4096
        fh.truncate(offset)
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["h0"], name="mm0"),
             helper.make_node("Relu", ["h0"], ["r0"], name="relu0"),
             helper.make_node("MatMul", ["r0", "w1"], ["h1"], name="mm1"),
             helper.make_node("Relu", ["h1"], ["r1"], name="relu1"),
             helper.make_node("MatMul", ["r1", "w2"], ["y"], name="mm2")]
    graph = helper.make_graph(
        nodes, "memory", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, shapes[2][1]])], tensors,
    )
    path = folder / "model.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    onnx.checker.check_model(str(path))
    return path, k * k * 4


def measure(method: str, model: Path, out: Path) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, method, str(model), str(out)],
                          capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"method": method, "error": f"exit {done.returncode}: {tail}", "seconds": seconds}
    return {"method": method, "seconds": seconds, **json.loads(done.stdout.strip().splitlines()[-1])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--largest-mib", type=int, default=1024, help="size of the largest fp32 weight")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="quantscope-memory-") as tmp:
        model, largest = build_model(Path(tmp), args.largest_mib * 2**20)
        print(f"largest tensor {largest / 2**20:.0f} MiB; peak and baseline RSS in MiB; ratio = (peak - baseline) / largest")
        print(f"{'method':<14}{'baseline':>10}{'peak':>10}{'ratio':>8}{'child peak':>12}{'seconds':>9}")
        for method in args.methods:
            out = Path(tmp) / f"out-{method}.onnx"
            row = measure(method, model, out)
            for leftover in Path(tmp).glob("out-*"):
                leftover.unlink()
            if "error" in row:
                print(f"{method:<14}{row['error']}")
            else:
                row["largest"] = largest
                row["ratio"] = (row["peak"] - row["baseline"]) / largest
                print(f"{method:<14}{row['baseline'] / 2**20:>10.0f}{row['peak'] / 2**20:>10.0f}{row['ratio']:>8.2f}"
                      f"{row['children_peak'] / 2**20:>12.0f}{row['seconds']:>9.1f}")
            rows.append(row)
            sys.stdout.flush()
    if args.out:
        args.out.write_text(json.dumps({"largest_bytes": largest, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
