"""Deprecated name of :mod:`quantscope.model_io`, kept for one release.

``io`` shadows the standard library's module of the same name; import from
:mod:`quantscope.model_io` instead. This module only re-exports its names.
"""

from quantscope.model_io import (
    Model,
    atomic_write_bytes,
    atomic_write_text,
    check_output_path,
    external_data_files,
    fingerprint_file,
    from_bytes,
    infer_shapes,
    load,
    save,
)

__all__ = [
    "Model",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_path",
    "external_data_files",
    "fingerprint_file",
    "from_bytes",
    "infer_shapes",
    "load",
    "save",
]
