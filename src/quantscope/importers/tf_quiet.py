"""TensorFlow's own logging kept quiet: set before TensorFlow (or LiteRT) is first imported.

TensorFlow's C++ side logs dozens of lines at start-up and while converting (CPU feature
notices, MLIR passes, "Estimated count of arithmetic ops"); ``TF_CPP_MIN_LOG_LEVEL=3`` hides
them. A value the user (or ``quantscope -v``) set is kept. Python-side absl warnings follow
the same level.
"""

from __future__ import annotations

import logging
import os

QUIET_LEVEL = "3"


def quiet_tensorflow() -> None:
    """Hide TensorFlow's C++ and absl logging unless ``TF_CPP_MIN_LOG_LEVEL`` says otherwise."""
    level = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", QUIET_LEVEL)
    if level >= "2":
        logging.getLogger("absl").setLevel(logging.ERROR)
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
