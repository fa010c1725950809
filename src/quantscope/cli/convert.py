"""``quantscope convert``: a PyTorch, Keras/TensorFlow or scikit-learn model to a checked ONNX file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from quantscope.cli.files import readable
from quantscope.cli.output import console, fmt_bytes, say
from quantscope.textsafe import markup


def source_paths(source: str) -> list[Path]:
    """The files ``convert`` reads for SOURCE: the path itself, or the .py file of a 'file.py:function'."""
    if Path(source).exists():
        return [Path(source)]
    module, sep, _ = source.rpartition(":")
    return [Path(module)] if sep and module.endswith(".py") else []


def parse_dynamic(specs: tuple[str, ...]) -> dict[str, list[int]]:
    """``("input_ids:1", "input_ids:2", "0:1")`` → ``{"input_ids": [1, 2], "0": [1]}``; exit 3 otherwise."""
    from quantscope.errors import ConfigError

    axes: dict[str, list[int]] = {}
    for spec in specs:
        name, sep, axis = spec.rpartition(":")
        if not sep or not name or not axis.strip().isdigit():
            raise ConfigError(f"--dynamic takes INPUT:AXIS (an input name or position, and an axis >= 1), "
                              f"e.g. --dynamic input_ids:1, not {spec!r}")
        axes.setdefault(name, []).append(int(axis))
    return axes


@click.command()
@click.argument("source")
@click.option("-o", "--output", type=click.Path(), required=True, help="Output .onnx path (never SOURCE or --example).")
@click.option("--example", "example_path", type=click.Path(path_type=Path, readable=False),
              help="Example inputs (.npz keyed by input name, or one array); fixes input types and checks the import.")
@click.option("--samples", type=int, default=16, show_default=True, help="Example samples to use from --example.")
@click.option("--trust", is_flag=True,
              help="Allow what runs code while it loads: pickle/joblib files, TensorFlow SavedModels (converting "
                   "one runs its graph) and Keras files with custom objects or Lambda layers.")
@click.option("--opset", type=int, help="ONNX opset to export (default: the converter's).")
@click.option("--default-ops", is_flag=True,
              help="scikit-learn: write linear models and scalers as MatMul graphs (quantizable), not ai.onnx.ml ops.")
@click.option("--dynamic", "dynamic_axes", multiple=True, metavar="INPUT:AXIS",
              help="Export this axis of this input (by name or position) as dynamic, besides the batch, e.g. "
                   "--dynamic input_ids:1 for the sequence length (repeatable; PyTorch and Keras).")
@click.option("--rtol", type=float, default=1e-3, show_default=True, help="Relative tolerance of the output check.")
@click.option("--atol", type=float, default=1e-4, show_default=True, help="Absolute tolerance of the output check.")
def convert(source: str, output: str, example_path: Path | None, samples: int, trust: bool, opset: int | None,
            default_ops: bool, dynamic_axes: tuple[str, ...], rtol: float, atol: float) -> None:
    """Convert a PyTorch, Keras/TensorFlow or scikit-learn model to a checked ONNX file.

    SOURCE is a .keras/.h5 file, a SavedModel directory, a pickle/joblib file (needs --trust),
    a torch.export program (.pt2), a TorchScript archive (.pt/.pth/.ts; it holds code: needs
    --trust), or 'module:function' (also 'file.py:function') returning (model, example_inputs).
    """
    import quantscope as qs
    from quantscope.importers import from_path, is_factory_spec, load_factory, to_onnx
    from quantscope.model_io import check_output_path, out_data_name
    from quantscope.workflows import read_example_inputs

    check_output_path(output, *source_paths(source), example_path, siblings=[out_data_name(output)])
    readable(example_path, "--example")
    example = read_example_inputs(example_path, samples) if example_path is not None else None
    kwargs: dict[str, Any] = {"rtol": rtol, "atol": atol}
    if opset is not None:
        kwargs["opset"] = opset
    if default_ops:
        kwargs["default_ops"] = True
    if dynamic_axes:
        kwargs["dynamic"] = parse_dynamic(dynamic_axes)
    if is_factory_spec(source):
        if str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))  # like `python -m`: modules beside you import
        obj, made_example = load_factory(source)
        model = to_onnx(obj, example if example is not None else made_example, **kwargs)
    else:
        model = from_path(source, example, trust=trust, **kwargs)
    written = qs.save(model, output)  # model.path is None for a conversion: check_output_path above guards SOURCE
    qs.load(written)  # what we wrote loads and validates
    ops = ", ".join(f"{op} {n}" for op, n in model.op_histogram().items())
    console.print(f"[green]wrote[/] {markup(str(written))} ({fmt_bytes(written.stat().st_size)}), opset {model.opset}")
    for kind, specs in (("input", model.inputs), ("output", model.outputs)):
        for spec in specs:
            say(f"  {kind} {spec.describe()}")
    say(f"  operators: {ops}")
    for note in model.notes:
        say(f"  {note}")
