"""PyTorch → ONNX with ``torch.onnx.export`` (the dynamo exporter, which needs onnxscript).

The batch dimension of every tensor input is exported as dynamic (``batch``). Weights are kept
inside the one model proto; :func:`quantscope.save` moves them to a ``.data`` file only for
models near protobuf's 2 GB limit. The caller's module is put in eval mode for the export and
given back in the mode it had.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from quantscope.errors import ConfigError, ConversionError
from quantscope.importers._proto import finalize
from quantscope.importers.check import DEFAULT_ATOL, DEFAULT_RTOL, check_outputs
from quantscope.io import Model

logger = logging.getLogger(__name__)


def convert(
    module: Any,
    example_inputs: Any,
    *,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    opset: int | None = None,
    dynamic_batch: bool = True,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
) -> Model:
    """Export ``module`` called on ``example_inputs`` and check ONNX Runtime reproduces it.

    ``example_inputs``: a tensor or array, a tuple/list of them (positional arguments), or a
    dict (keyword arguments); the first axis of each is the batch.
    """
    if not isinstance(module, torch.nn.Module):
        raise ConfigError(f"the torch importer converts a torch.nn.Module, not a {type(module).__name__}")
    args, kwargs = _as_args(example_inputs)
    tensors = [*args, *kwargs.values()]
    with _eval_mode(module):
        with torch.no_grad():
            expected = _flatten(module(*args, **kwargs))
        proto, dynamic = _export(module, args, kwargs, input_names, opset, dynamic_batch)
    notes = [
        f"imported from torch {torch.__version__} with torch.onnx.export(dynamo=True), "
        f"opset {_default_opset(proto)}"
        + (", dynamic batch" if dynamic else ", static batch (the model did not export with a dynamic one)")
    ]
    names = list(output_names) if output_names is not None else _default_output_names(len(expected))
    model = finalize(proto, notes=notes, output_names=names, batch_dim=dynamic, name=type(module).__name__)
    feeds = _feeds(model, tensors)
    check = check_outputs(model, feeds, expected, framework="torch", rtol=rtol, atol=atol)
    checks = [check.describe()]
    batch = int(tensors[0].shape[0]) if tensors and tensors[0].dim() > 0 else 1
    if dynamic and batch > 1:  # the dynamic batch works: one sample alone gives the same answer
        one_args = tuple(t[:1] for t in args)
        one_kwargs = {k: v[:1] for k, v in kwargs.items()}
        with _eval_mode(module), torch.no_grad():
            expected_one = _flatten(module(*one_args, **one_kwargs))
        one = check_outputs(
            model, _feeds(model, [*one_args, *one_kwargs.values()]), expected_one,
            framework="torch", rtol=rtol, atol=atol,
        )
        checks.append(f"batch of 1: {one.describe()}")
    return Model(ir=model.ir, fingerprint=model.fingerprint, notes=(*model.notes, *checks))


def _as_args(example_inputs: Any) -> tuple[tuple[torch.Tensor, ...], dict[str, torch.Tensor]]:
    if example_inputs is None:
        raise ConfigError(
            "a PyTorch model needs example inputs (a tensor, a tuple of tensors or a dict) to be exported; "
            "pass them as to_onnx(module, example_inputs)"
        )
    if isinstance(example_inputs, Mapping):
        return (), {str(k): _tensor(v, str(k)) for k, v in example_inputs.items()}
    if isinstance(example_inputs, tuple | list):
        return tuple(_tensor(v, f"argument {i}") for i, v in enumerate(example_inputs)), {}
    return (_tensor(example_inputs, "argument 0"),), {}


def _tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    raise ConfigError(f"example input {what} must be a torch.Tensor or numpy array, not {type(value).__name__}")


@contextlib.contextmanager
def _eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """Eval mode for the duration, then every submodule's own training flag back."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _flatten(out: Any) -> list[np.ndarray]:
    """Outputs in the order the exporter flattens them (pytree order)."""
    leaves, _ = torch.utils._pytree.tree_flatten(out)
    arrays = []
    for leaf in leaves:
        if isinstance(leaf, torch.Tensor):
            arrays.append(leaf.detach().cpu().numpy())
        elif isinstance(leaf, int | float | bool):
            arrays.append(np.asarray(leaf))
    if not arrays:
        raise ConversionError("the module returned no tensor; there is nothing to export")
    return arrays


def _export(
    module: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    kwargs: dict[str, torch.Tensor],
    input_names: Sequence[str] | None,
    opset: int | None,
    dynamic_batch: bool,
) -> tuple[Any, bool]:
    """Export, first with a dynamic batch; a model that pins its batch is exported as is."""
    if dynamic_batch:
        # torch.export specializes dimensions of size 1, so a batch-1 example is repeated to 2
        ex_args = tuple(_at_least_two(t) for t in args)
        ex_kwargs = {k: _at_least_two(v) for k, v in kwargs.items()}
        batch = torch.export.Dim("batch")
        dyn: Any
        if kwargs:
            dyn = {k: ({0: batch} if v.dim() > 0 else None) for k, v in kwargs.items()}
        else:
            dyn = tuple({0: batch} if t.dim() > 0 else None for t in args)
        try:
            return _run_export(module, ex_args, ex_kwargs, input_names, opset, dyn), True
        except Exception as exc:
            logger.warning(
                "the model did not export with a dynamic batch dimension (%s: %s); exporting with the "
                "example's fixed batch size", type(exc).__name__, str(exc).strip().splitlines()[0][:300],
            )
    try:
        return _run_export(module, args, kwargs, input_names, opset, None), False
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConversionError(
            f"torch.onnx.export failed: {type(exc).__name__}: {first}. Make sure the module runs on "
            "the example inputs and uses operators the exporter supports"
        ) from exc


def _at_least_two(t: torch.Tensor) -> torch.Tensor:
    if t.dim() > 0 and t.shape[0] == 1:
        return torch.cat([t, t])
    return t


def _run_export(module: torch.nn.Module, args: tuple[torch.Tensor, ...], kwargs: dict[str, torch.Tensor],
                input_names: Sequence[str] | None, opset: int | None, dynamic_shapes: Any) -> Any:
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            args,
            kwargs=kwargs or None,
            dynamo=True,
            opset_version=opset,
            input_names=list(input_names) if input_names is not None else None,
            dynamic_shapes=dynamic_shapes,
            external_data=False,
            optimize=True,
            verbose=False,
        )
    if program is None:
        raise ConversionError("torch.onnx.export returned no program")
    return program.model_proto


def _default_opset(proto: Any) -> int:
    return next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def _default_output_names(n: int) -> list[str]:
    return ["output"] if n == 1 else [f"output_{i}" for i in range(n)]


def _feeds(model: Model, tensors: Sequence[torch.Tensor]) -> dict[str, np.ndarray]:
    specs = model.inputs
    if len(specs) != len(tensors):
        raise ConversionError(
            f"the exported model takes {len(specs)} input(s) ({[s.name for s in specs]}) but "
            f"{len(tensors)} example tensor(s) were given; inputs the model ignores are dropped by the "
            "exporter: remove them from the example inputs"
        )
    return {spec.name: t.detach().cpu().numpy() for spec, t in zip(specs, tensors, strict=True)}
