"""PyTorch programs read from files: TorchScript archives and ``torch.export`` (``.pt2``) programs.

A TorchScript archive holds code (TorchScript and pickled objects) that runs when it loads: it
is read only with ``trust`` (``--trust``). A ``.pt2`` program from ``torch.export.save`` holds a
graph and weights; its saved example inputs are used when none are given. TorchScript is
turned into a ``torch.export`` program (``TS2EPConverter``) since the dynamo exporter does not
take ScriptModules.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path
from typing import Any

import torch

from quantscope.errors import ConfigError, ConversionError
from quantscope.importers.exporter_errors import root_cause

logger = logging.getLogger(__name__)

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts")
PROGRAM_SUFFIXES = (".pt2",)


def load_program(path: str | os.PathLike[str], example_inputs: Any, *, trust: bool) -> tuple[Any, Any, Any]:
    """``(ExportedProgram, example inputs, reference)`` read from ``path``; the reference is the
    TorchScript module the program came from (None for a ``.pt2``: the program is its own)."""
    p = Path(path)
    if p.suffix.lower() in PROGRAM_SUFFIXES:
        try:
            program = torch.export.load(str(p))
        except Exception as exc:
            raise ConversionError(f"cannot load the torch.export program {p}: {root_cause(exc)}") from exc
        saved = program.example_inputs
        if example_inputs is None and saved is not None:
            args, kwargs = saved
            example_inputs = kwargs if kwargs and not args else tuple(args) if len(args) != 1 else args[0]
        return program, example_inputs, None
    if not trust:
        raise ConfigError(
            f"{p} is read as a TorchScript archive, which holds code that runs when it loads; "
            "convert it only if you trust its source: pass trust=True (--trust on the command line)"
        )
    try:
        script = torch.jit.load(str(p), map_location="cpu")
    except Exception as exc:
        raise ConversionError(
            f"cannot load {p} as TorchScript ({root_cause(exc)}); a state dict or a pickled module is not a "
            "model file: save it with torch.jit.save or torch.export.save, or use 'module:function'"
        ) from exc
    if example_inputs is None:
        raise ConfigError(f"a TorchScript model needs example inputs to be converted: pass --example for {p}")
    from quantscope.importers.torch import _as_args

    args, kwargs = _as_args(example_inputs)
    script.eval()
    try:
        from torch._export.converter import TS2EPConverter

        with contextlib.redirect_stdout(io.StringIO()):
            program = TS2EPConverter(script, args, kwargs or None).convert()
    except Exception as exc:
        raise ConversionError(f"cannot turn the TorchScript model {p} into a torch.export program: "
                              f"{root_cause(exc)}") from exc
    logger.info("TorchScript %s converted to a torch.export program", p.name)
    return program, example_inputs, script
