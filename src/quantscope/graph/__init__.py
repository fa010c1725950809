"""onnx-ir graph code shared by every method.

* :mod:`~quantscope.graph.build`: unique names, initializers from arrays, nodes, a value taking
  another's place (every graph edit goes through it);
* :mod:`~quantscope.graph.queries`: read-only questions (constants, attributes, consumers);
* :mod:`~quantscope.graph.passes` and :mod:`~quantscope.graph.prepare`: the onnx-ir passes that
  ready a float model for quantization, composed by onnx-ir's pass manager;
* :mod:`~quantscope.graph.qdq`, :mod:`~quantscope.graph.rewrite`, :mod:`~quantscope.graph.expand`:
  QuantizeLinear/DequantizeLinear, Casts and codebook expansion written with the builders;
* :mod:`~quantscope.graph.sentinels`: which tensors may carry ``-inf``/``finfo.min`` masks.
"""
