"""Side-by-side benchmarks of quantscope against the tools users would otherwise pick.

Run ``make bench`` (or ``python -m bench.run --help``). Each quantization runs in a fresh
subprocess (wall time and peak RSS of that process); latency and quality are measured in
the parent with identical ONNX Runtime session options for every model. Results go to
``bench/RESULTS.md``. Nothing here is imported by ``quantscope`` itself.
"""
