"""Runtimes other than ONNX Runtime whose models quantscope measures beside its own.

:mod:`quantscope.backends.tflite`: the classic TensorFlow Lite post-training quantization
variants of a Keras model, run with the LiteRT interpreter (the ``[tensorflow]`` extra).
Nothing here is imported by ``import quantscope``.
"""
