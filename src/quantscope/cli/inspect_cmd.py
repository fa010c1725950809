"""``quantscope inspect``: what a model is made of, and what static-int8 would do with it."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from quantscope.cli.output import console, fmt_bytes, say
from quantscope.textsafe import markup


def _shape(dims: list[int | str | None] | None) -> str:
    return "?" if dims is None else "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


@click.command("inspect")
@click.argument("model_path", type=click.Path(path_type=Path, readable=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def inspect_command(model_path: Path, as_json: bool) -> None:
    """Inputs, outputs, opset, operators, parameters, size, and which nodes can be quantized."""
    from quantscope.inspection import inspect_model

    info = inspect_model(model_path)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    console.print(f"[bold]{markup(str(model_path))}[/]  opset {info['opset']}  size {fmt_bytes(info['file_bytes'])}  "
                  f"parameters {info['parameters']:,}  producer {markup(info['producer'] or '?')}")
    io = Table(title="inputs / outputs", show_edge=False)
    for column in ("kind", "name", "dtype", "shape"):
        io.add_column(column)
    for kind in ("inputs", "outputs"):
        for spec in info[kind]:
            io.add_row(kind[:-1], markup(spec["name"]), spec["dtype"], markup(_shape(spec["shape"])))
    console.print(io)
    ops = Table(title="operators", show_edge=False)
    ops.add_column("op")
    ops.add_column("count", justify="right")
    ops.add_column("static-int8", justify="right")
    for op, count in info["ops"].items():
        q = info["quantizable_by_op"].get(op, 0)
        ops.add_row(markup(op), str(count), f"{q}/{count}" if q else "-")
    console.print(ops)
    s = info["quantizable"]
    say(f"static-int8 would quantize {s['quantized']} node(s), fuse {s['fused']}, keep {s['float']} in float.")
    for reason, n in list(s["float_reasons"].items())[:8]:
        say(f"  float x{n}: {reason}")
