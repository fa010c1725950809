"""PyTorch → ONNX with ``torch.onnx.export`` (the dynamo exporter, which needs onnxscript).

The batch dimension of every tensor input is exported as dynamic (``batch``), and so are the
axes named in ``dynamic`` (e.g. ``{"input_ids": [1]}`` for the sequence length). Modules,
``torch.export`` programs and, through :mod:`.torch_files`, TorchScript and ``.pt2`` files
are converted. Weights are kept
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
from quantscope.importers.exporter_errors import root_cause
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
    dynamic: Mapping[str | int, Sequence[int]] | None = None,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    reference: Any = None,
) -> Model:
    """Export ``module`` called on ``example_inputs`` and check ONNX Runtime reproduces it.

    ``module`` is a ``torch.nn.Module`` or a ``torch.export.ExportedProgram``.
    ``example_inputs``: a tensor or array, a tuple/list of them (positional arguments), or a
    dict (keyword arguments); the first axis of each is the batch. ``dynamic`` names more
    dynamic axes per input (by argument name or position), e.g. ``{"x": [1]}``. ``reference``
    is what the ONNX model is checked against (default: the module, or the program's module).
    """
    program = isinstance(module, torch.export.ExportedProgram)
    if not program and not isinstance(module, torch.nn.Module):
        raise ConfigError(f"the torch importer converts a torch.nn.Module, not a {type(module).__name__}")
    args, kwargs = _as_args(example_inputs)
    tensors = [*args, *kwargs.values()]
    axes = _extra_axes(module, args, kwargs, dynamic)
    with _eval_mode(module):
        with torch.no_grad():
            expected = _flatten((reference or _callable(module))(*args, **kwargs))
        proto, free_batch = _export(module, args, kwargs, input_names, opset, dynamic_batch, axes)
    notes = [
        f"imported from torch {torch.__version__} with torch.onnx.export(dynamo=True), "
        f"opset {_default_opset(proto)}"
        + (", dynamic batch" if free_batch else ", shapes as the program was exported" if not dynamic_batch
           else ", static batch (the model did not export with a dynamic one)")
    ]
    names = list(output_names) if output_names is not None else _default_output_names(len(expected))
    model = finalize(proto, notes=notes, output_names=names, batch_dim=free_batch, name=type(module).__name__)
    feeds = _feeds(model, tensors)
    check = check_outputs(model, feeds, expected, framework="torch", rtol=rtol, atol=atol)
    checks = [check.describe()]
    batch = int(tensors[0].shape[0]) if tensors and tensors[0].dim() > 0 else 1
    if free_batch and batch > 1:  # the dynamic batch works: one sample alone gives the same answer
        one_args = tuple(t[:1] for t in args)
        one_kwargs = {k: v[:1] for k, v in kwargs.items()}
        with _eval_mode(module), torch.no_grad():
            expected_one = _flatten((reference or _callable(module))(*one_args, **one_kwargs))
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


def _callable(module: Any) -> Any:
    return module.module() if isinstance(module, torch.export.ExportedProgram) else module


def _extra_axes(module: Any, args: tuple[torch.Tensor, ...], kwargs: dict[str, torch.Tensor],
                dynamic: Mapping[str | int, Sequence[int]] | None) -> list[set[int]]:
    """Per example tensor (positional, then keyword), the dynamic axes besides the batch."""
    axes: list[set[int]] = [set() for _ in (*args, *kwargs)]
    if not dynamic:
        return axes
    import inspect

    try:
        params = [p for p in inspect.signature(_callable(module).forward).parameters if p != "self"]
    except (TypeError, ValueError, AttributeError):
        params = []
    names = [*(params[i] if i < len(params) else f"input_{i}" for i in range(len(args))), *kwargs]
    for key, dims in dynamic.items():
        index = key if isinstance(key, int) else int(key) if str(key).isdigit() else None
        if index is None and key in names:
            index = names.index(str(key))
        if index is None or not 0 <= index < len(axes):
            raise ConfigError(f"dynamic axes for {key!r}: the model's inputs are {names} (or their positions)")
        rank = (*args, *kwargs.values())[index].dim()
        for d in dims:
            if not 1 <= d < rank:
                raise ConfigError(f"dynamic axis {d} of {names[index]!r}: it has axes 0..{rank - 1}, and axis 0 "
                                  "(the batch) is dynamic already")
        axes[index].update(dims)
    return axes


@contextlib.contextmanager
def _eval_mode(module: Any) -> Iterator[None]:
    """Eval mode for the duration, then every submodule's own training flag back."""
    if not isinstance(module, torch.nn.Module):  # an ExportedProgram is traced in eval mode already
        yield
        return
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
    axes: Sequence[set[int]] = (),
) -> tuple[Any, bool]:
    """Export, first with a dynamic batch (and ``axes``); a model that pins its batch is exported as is."""
    if dynamic_batch:
        # torch.export specializes dimensions of size 1, so a batch-1 example is repeated to 2
        ex_args = tuple(_at_least_two(t) for t in args)
        ex_kwargs = {k: _at_least_two(v) for k, v in kwargs.items()}
        batch = torch.export.Dim("batch")
        names = [*(f"arg{i}" for i in range(len(args))), *kwargs]
        per = [_dims(t, batch, extra, name) for t, extra, name in
               zip((*args, *kwargs.values()), axes or [set()] * len(names), names, strict=True)]
        dyn: Any = dict(zip(kwargs, per[len(args):], strict=True)) if kwargs else tuple(per)
        try:
            return _run_export(module, ex_args, ex_kwargs, input_names, opset, dyn), True
        except Exception as exc:
            if any(axes):  # asked for: a failure is the user's to know, not a silent static model
                raise _failed(exc, "with the dynamic axes asked for") from exc
            dynamic_failure: Exception | None = exc
    else:
        dynamic_failure = None
    try:
        proto = _run_export(module, args, kwargs, input_names, opset, None)
    except Exception as exc:
        raise _failed(exc) from exc
    if dynamic_failure is not None:
        logger.warning("the model did not export with a dynamic batch dimension (%s); exported with the "
                       "example's fixed batch size", root_cause(dynamic_failure))
    return proto, False


def _dims(t: torch.Tensor, batch: Any, extra: set[int], name: str) -> dict[int, Any] | None:
    if t.dim() == 0:
        return None
    return {0: batch, **{d: torch.export.Dim(f"{name}_dim{d}") for d in sorted(extra)}}


def _failed(exc: BaseException, how: str = "") -> ConversionError:
    """The exporter's failure with its root cause in one line (``-v`` shows the whole chain)."""
    return ConversionError(
        f"torch.onnx.export failed{' ' + how if how else ''}: {root_cause(exc).rstrip('.')}. Make sure the module runs on "
        "the example inputs and uses operators the exporter supports (run with -v for the full trace)"
    )


def _at_least_two(t: torch.Tensor) -> torch.Tensor:
    if t.dim() > 0 and t.shape[0] == 1:
        return torch.cat([t, t])
    return t


def _run_export(module: Any, args: tuple[torch.Tensor, ...], kwargs: dict[str, torch.Tensor],
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


def convert_file(path: Any, example_inputs: Any = None, *, trust: bool = False, **kwargs: Any) -> Model:
    """A TorchScript archive (``.pt``/``.pth``, with ``trust``) or a ``torch.export`` program (``.pt2``)."""
    from quantscope.importers.torch_files import load_program

    program, examples, reference = load_program(path, example_inputs, trust=trust)
    if reference is None and not kwargs.get("dynamic"):  # a saved program keeps the shapes it was exported with
        kwargs.setdefault("dynamic_batch", False)
    return convert(program, examples, reference=reference, **kwargs)
