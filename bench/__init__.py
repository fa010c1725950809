"""Side-by-side benchmarks of quantscope against float and against the tools users would otherwise pick.

Run ``make bench`` (or ``python -m bench.run --help``): one run writes the whole
``bench/RESULTS.md`` from one code version. Each quantization runs in a fresh subprocess (wall
time and peak RSS of that process); latency and quality are measured in the parent with identical
ONNX Runtime session options for every model, latency round-robin so every ratio has an interval.
The peers (onnxruntime.quantization, NNCF) run as their docs advise and with their defaults
(:mod:`bench.peers`); verdicts on the targets are :mod:`bench.verdict`'s. Nothing here is
imported by ``quantscope`` itself.
"""
