"""``quantscope quantize``: one model, one method, the written model and its sidecar."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from quantscope import _loadcheck_spawn
from quantscope.cli.data_options import DataOptions, data_options
from quantscope.cli.files import readable
from quantscope.cli.options import config_object, dataset, method_options, method_settings
from quantscope.cli.output import console, fmt_bytes, progress_bar, say, warn
from quantscope.config import calibrator_names, config_classes
from quantscope.config.calibration import calibrator
from quantscope.textsafe import markup


def _speed_line(model: Any, q: Any) -> str:
    """The written model's speed against the user's float model on this machine (batch 1, paired rounds).

    The plan's own measurement (static-int8) is against the prepared float model, which its
    rewrites may already have made faster; this line times the model as given.
    """
    from quantscope.analysis.evaluate import measure_paired_latency
    from quantscope.errors import QuantscopeError
    from quantscope.methods.static_int8.latency import synthetic_feeds

    planned = q.plan.extra.get("latency") or {}
    if planned.get("measured") is False:
        return f"speed against float: not measured ({planned.get('reason', 'not asked')})"
    threads, batch = planned.get("threads", 1), planned.get("batch", 1)
    try:
        m = measure_paired_latency(model, q.model, synthetic_feeds(model, batch=batch, shapes=planned.get("inputs")), threads=threads)
    except QuantscopeError as exc:
        return f"speed against float: not measured ({exc})"
    return (
        f"speed against float on this machine: {m.speed:.2f}x (95% interval {m.low:.2f}-{m.high:.2f}, "
        f"{m.verdict}), batch {batch}, {threads} thread(s)"
    )


def _phases(q: Any) -> str:
    """Where the time went, when it was measured: calibration and static-int8's speed search."""
    parts = [f"{label} {seconds:.1f} s" for label, seconds in (
        ("calibration", q.calibration_s), ("speed search", (q.plan.extra.get("latency") or {}).get("search_s")),
    ) if seconds is not None]
    return f" ({', '.join(parts)})" if parts else ""


def _epilog() -> str:
    methods = "\n".join(
        f"  {name:<13} {(cls.__doc__ or '').strip().splitlines()[0]}" for name, cls in config_classes().items()
    )
    calibrators = "\n".join(f"  {name:<13} {calibrator(name).help}" for name in calibrator_names())
    return (
        f"\b\nMethods (-m/--method):\n{methods}\n\n\b\nCalibrators (--calibration, static-int8):\n{calibrators}\n\n"
        "-m also takes a variant as sweep and tune print it: -m static-int8/entropy is -m static-int8 "
        "--calibration entropy, -m cluster-4 is -m cluster --bits 4.\n\n"
        "--print-config writes the effective config as TOML on stdout (the --config format) and exits: "
        "nothing is calibrated or written, -o and --calib are not read.\n\n"
        "A method option given for a method that does not have it is refused. With --config, the file "
        "is the base: options and --set override its fields, an option and a --set for the same field "
        "are refused, and -m/--method must name the file's method or be left out (exit 3 otherwise)."
    )


def _config(method: str | None, config_file: Path | None, opts: dict[str, Any], settings: tuple[str, ...]) -> Any:
    """The effective config: ``--config`` file, then the method options, then ``--set``."""
    from quantscope.config.compose import config_from_options

    file = config_object(config_file) if config_file is not None else None
    return config_from_options(method, file, method_settings(), opts, settings, file_name=f"--config {config_file}")


@click.command(epilog=_epilog())
@click.argument("model_path", type=click.Path(path_type=Path, readable=False))
@click.option("-m", "--method", default=None, metavar="METHOD[/CALIBRATOR]",
              help="Quantization method (listed below), or a variant name as sweep and tune print it.  "
                   "[default: the config file's, else static-int8]")
@click.option("-o", "--output", "output", type=click.Path(),
              help="Output .onnx path (never an input; the sidecar is written beside it, together).  [required]")
@click.option("--calib", type=click.Path(path_type=Path, readable=False), help="Calibration data: .npz, a folder of .npz, a folder of images, or a .txt of texts (see the data options).")
@data_options()
@method_options
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Any config field, value as JSON (repeatable), e.g. --set min_size=0.")
@click.option("--config", "config_file", type=click.Path(path_type=Path, readable=False),
              help="TOML or JSON config (same schema as the sidecar's 'config'); options override its fields.")
@click.option("--print-config", is_flag=True, help="Print the effective config as TOML and exit (see below).")
def quantize(model_path: Path, method: str | None, output: str | None, calib: Path | None,
             settings: tuple[str, ...], config_file: Path | None, print_config: bool, data_options: DataOptions,
             **opts: Any) -> None:
    """Quantize MODEL_PATH and write the quantized model plus a sidecar JSON (config, plan, versions)."""
    from quantscope.cli.names import split_method

    method, opts = split_method(method, opts)
    if print_config:
        from quantscope.config.toml import config_to_toml

        click.echo(config_to_toml(_config(method, config_file, opts, settings)), nl=False)
        return
    if output is None:
        raise click.UsageError("Missing option '-o' / '--output'.")
    _loadcheck_spawn.prestart()  # the load check's child imports ONNX Runtime while this loads and calibrates
    try:
        _quantize(model_path, method, output, calib, settings, config_file, data_options, opts)
    finally:
        _loadcheck_spawn.discard()


def _quantize(model_path: Path, method: str | None, output: str, calib: Path | None, settings: tuple[str, ...],
              config_file: Path | None, data_options: DataOptions, opts: dict[str, Any]) -> None:
    import quantscope as qs
    from quantscope.errors import ConfigError, DataError
    from quantscope.model_io import check_output_path, out_data_name
    from quantscope.quantization import sidecar_path

    model = qs.load(model_path)
    for note in model.notes:  # e.g. an old IR version upgraded on load
        warn(note, "note")
    inputs = (model_path, *model.data_files, readable(calib, "--calib", DataError), config_file)
    check_output_path(output, model.path, *inputs, siblings=[sidecar_path(output).name, out_data_name(output)])
    config = _config(method, config_file, opts, settings)
    data = dataset(calib, data_options, "--calib") if calib is not None else None
    if data is None and config.needs_calibration:
        raise ConfigError(f"{config.method} needs calibration data: add --calib calib.npz")
    start = time.perf_counter()
    with progress_bar("calibrating") as update:
        q = qs.quantize(model, config, data, progress=update)
    say(_speed_line(model, q))
    written = q.save(output, inputs=[p for p in inputs if p is not None])
    elapsed = time.perf_counter() - start
    summary = q.plan.summary()
    console.print(
        f"[green]wrote[/] {markup(str(written))} ({fmt_bytes(written.stat().st_size)}, "
        f"from {fmt_bytes(model_path.stat().st_size)}) in {elapsed:.1f} s{_phases(q)}"
    )
    say(
        f"{config.method}: quantized {summary['quantized']} node(s) "
        f"({', '.join(f'{k} {v}' for k, v in summary['quantized_by_op'].items())}), "
        f"fused {summary['fused']}, float {summary['float']}"
    )
    for reason, n in list(summary["float_reasons"].items())[:6]:
        say(f"  float x{n}: {reason}")
    for w in q.plan.warnings:
        warn(w)
    say(f"plan and config: {sidecar_path(written)}")

