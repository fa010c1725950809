"""The ``quantscope`` command: a thin shell over the public API, and the only place that prints.

Exit codes: 0 ok, 2 a command line that does not parse, 3 a refused input (model, data, option
or config value, output path) or a runtime failure,
4 a quality gate failed, 1 internal error.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from quantscope import __version__
from quantscope.errors import QuantscopeError

console = Console(stderr=False)
err_console = Console(stderr=True)


class _Group(click.Group):
    """Turns quantscope errors into one clear line and the documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except QuantscopeError as exc:
            err_console.print(f"[bold red]error:[/] {type(exc).__name__}: {escape(str(exc))}", highlight=False)
            sys.exit(exc.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except KeyboardInterrupt:
            err_console.print("interrupted")
            sys.exit(130)
        except Exception as exc:  # an internal error: show it plainly, exit 1
            logging.getLogger("quantscope").debug("internal error", exc_info=True)
            err_console.print(f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))}", highlight=False)
            err_console.print("run with --verbose for the traceback, and please report it")
            if ctx.obj and ctx.obj.get("verbose"):
                raise
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="quantscope")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens, and show tracebacks of internal errors.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Post-training quantization and analysis of trained models, executed by ONNX Runtime."""
    ctx.obj = {"verbose": verbose}
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int | None], None]]:
    """A rich progress bar on a terminal; silent otherwise."""
    enabled = err_console.is_terminal
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=True, disable=not enabled,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


@main.command()
@click.argument("model_path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def inspect(model_path: Path, as_json: bool) -> None:
    """Inputs, outputs, opset, operators, parameters, size, and which nodes can be quantized."""
    from quantscope.inspect import inspect_model

    info = inspect_model(model_path)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    console.print(f"[bold]{escape(str(model_path))}[/]  opset {info['opset']}  size {_fmt_bytes(info['file_bytes'])}  "
                  f"parameters {info['parameters']:,}  producer {escape(info['producer'] or '?')}")
    io = Table(title="inputs / outputs", show_edge=False)
    io.add_column("kind")
    io.add_column("name")
    io.add_column("dtype")
    io.add_column("shape")
    for kind in ("inputs", "outputs"):
        for spec in info[kind]:
            shape = "?" if spec["shape"] is None else "[" + ", ".join("?" if d is None else str(d) for d in spec["shape"]) + "]"
            io.add_row(kind[:-1], escape(spec["name"]), spec["dtype"], escape(shape))
    console.print(io)
    ops = Table(title="operators", show_edge=False)
    ops.add_column("op")
    ops.add_column("count", justify="right")
    ops.add_column("static-int8", justify="right")
    for op, count in info["ops"].items():
        q = info["quantizable_by_op"].get(op, 0)
        ops.add_row(escape(op), str(count), f"{q}/{count}" if q else "-")
    console.print(ops)
    s = info["quantizable"]
    console.print(f"static-int8 would quantize {s['quantized']} node(s), fuse {s['fused']}, keep {s['float']} in float.")
    for reason, n in list(s["float_reasons"].items())[:8]:
        console.print(f"  float x{n}: {escape(reason)}", highlight=False)


METHOD_OPTIONS = ("calibration", "percentile", "num_samples", "batch_size", "activation_dtype", "seed")


@main.command()
@click.argument("model_path", type=click.Path(path_type=Path))
@click.option("-m", "--method", default="static-int8", show_default=True, help="Quantization method.")
@click.option("-o", "--output", "output", type=click.Path(path_type=Path), required=True, help="Output .onnx path.")
@click.option("--calib", type=click.Path(path_type=Path), help="Calibration data (.npz or a folder of .npz).")
@click.option("--calibration", type=click.Choice(["minmax", "percentile", "entropy", "mse"]), help="Calibrator.")
@click.option("--percentile", type=float, help="Percentile for --calibration percentile (default 99.99).")
@click.option("--num-samples", type=int, help="Calibration samples to use (seeded subset).")
@click.option("--batch-size", type=int, help="Calibration batch size.")
@click.option("--activation-dtype", type=click.Choice(["uint8", "int8"]), help="Activation type (uint8 is fast on x86).")
@click.option("--per-tensor", is_flag=True, help="One weight scale per tensor instead of per channel.")
@click.option("--reduce-range/--full-range", default=None,
              help="7-bit weights (avoid int16 saturation on x86 without VNNI); default: decided from this CPU.")
@click.option("--integer-io", is_flag=True, help="Quantized model inputs/outputs (for integer-only hardware).")
@click.option("--exclude-name", multiple=True, help="Leave this node in float (repeatable).")
@click.option("--exclude-regex", multiple=True, help="Leave nodes whose name matches in float (repeatable).")
@click.option("--exclude-op", multiple=True, help="Leave every node of this op type in float (repeatable).")
@click.option("--bits", type=int, help="Bits for cluster (2-8).")
@click.option("--block-size", type=int, help="Block size for weight-int8/weight-int4 (16-256).")
@click.option("--asymmetric", is_flag=True, default=None, help="Asymmetric blocks (weight-only methods).")
@click.option("--algorithm", type=click.Choice(["rtn", "hqq"]), help="Weight-only rounding: round-to-nearest or HQQ.")
@click.option("--format", "format_", type=click.Choice(["auto", "matmulnbits", "qdq"]), help="Weight-only storage format.")
@click.option("--weights-only", is_flag=True, default=None, help="float16: store float16 weights, compute in float32.")
@click.option("--op-types", help="Comma-separated op types to rewrite (dynamic-int8, cluster, ternary, binary).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Any config field, value as JSON (repeatable), e.g. --set min_size=0.")
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="JSON config (same schema as the sidecar's 'config').")
@click.option("--seed", type=int, help="Seed for the calibration subset.")
def quantize(model_path: Path, method: str, output: Path, calib: Path | None, config_file: Path | None, **opts: Any) -> None:
    """Quantize MODEL_PATH and write the quantized model plus a sidecar JSON (config, plan, versions)."""
    import quantscope as qs
    from quantscope.config import config_class, config_from_dict
    from quantscope.errors import ConfigError
    from quantscope.io import check_output_path

    model = qs.load(model_path)
    check_output_path(output, model.path, *model.data_files)
    cfg: dict[str, Any] = {}
    if config_file is not None:
        try:
            cfg = json.loads(config_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc}") from exc
        if not isinstance(cfg, dict):
            raise ConfigError(
                f"config file {config_file} must hold a JSON object (like the sidecar's \"config\"), "
                f"not a {type(cfg).__name__}"
            )
    cfg.setdefault("method", method)
    if cfg["method"] != method and method != "static-int8":
        raise ConfigError(f"--method {method} disagrees with the config file's method {cfg['method']!r}")
    for key in METHOD_OPTIONS:
        if opts.get(key) is not None:
            cfg[key] = opts[key]
    for key, value in (("bits", opts["bits"]), ("block_size", opts["block_size"]), ("algorithm", opts["algorithm"]),
                       ("format", opts["format_"]), ("weights_only", opts["weights_only"])):
        if value is not None:
            cfg[key] = value
    if opts["asymmetric"]:
        cfg["symmetric"] = False
    if opts["op_types"]:
        cfg["op_types"] = [op.strip() for op in opts["op_types"].split(",") if op.strip()]
    for item in opts["settings"]:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set takes KEY=VALUE, got {item!r}")
        try:
            cfg[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            cfg[key.strip()] = raw
    if opts["per_tensor"]:
        cfg["per_channel"] = False
    if opts["reduce_range"] is not None:
        cfg["reduce_range"] = opts["reduce_range"]
    if opts["integer_io"]:
        cfg["integer_io"] = True
    exclude = {"names": list(opts["exclude_name"]), "patterns": list(opts["exclude_regex"]), "op_types": list(opts["exclude_op"])}
    if any(exclude.values()):
        cfg["exclude"] = exclude
    config_class(cfg["method"])
    config = config_from_dict(cfg)
    data = None
    if calib is not None:
        data = qs.Dataset.from_folder(calib) if calib.is_dir() else qs.Dataset.from_npz(calib)
    elif config.needs_calibration:
        raise ConfigError(f"{config.method} needs calibration data: add --calib calib.npz")
    start = time.perf_counter()
    with progress_bar("calibrating") as update:
        q = qs.quantize(model, config, data, progress=update)
    written = q.save(output)
    elapsed = time.perf_counter() - start
    summary = q.plan.summary()
    console.print(
        f"[green]wrote[/] {escape(str(written))} ({_fmt_bytes(written.stat().st_size)}, "
        f"from {_fmt_bytes(model_path.stat().st_size)}) in {elapsed:.1f} s"
    )
    console.print(
        f"{config.method}: quantized {summary['quantized']} node(s) "
        f"({', '.join(f'{k} {v}' for k, v in summary['quantized_by_op'].items())}), "
        f"fused {summary['fused']}, float {summary['float']}", highlight=False,
    )
    for reason, n in list(summary["float_reasons"].items())[:6]:
        console.print(f"  float x{n}: {escape(reason)}", highlight=False)
    for w in q.plan.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)
    from quantscope.quantize import sidecar_path

    console.print(f"plan and config: {escape(str(sidecar_path(written)))}", highlight=False)


@main.command()
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("quantscope-demo"), show_default=True,
              help="Where to write the quantized models and the report.")
def demo(out_dir: Path) -> None:
    """Sweep every method on the bundled example (a digits CNN) and write the report."""
    from quantscope.demo import run_demo

    out_dir.mkdir(parents=True, exist_ok=True)
    with step_progress("sweeping the digits CNN") as update:
        results, report_dir = run_demo(out_dir, progress=update)
    _show_results(results, None)
    page = report_dir / "index.html"
    where = page if page.exists() else report_dir / "results.json"
    console.print(f"models written to {escape(str(out_dir / 'models'))}/", highlight=False)
    console.print(f"report: {escape(str(where))}", highlight=False)


def _floats(text: str | None, what: str) -> list[float] | None:
    from quantscope.errors import ConfigError

    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise ConfigError(f"{what} takes comma-separated numbers, got {text!r}") from exc


@main.command()
@click.argument("model_path", type=click.Path(path_type=Path))
@click.argument("variant_paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--data", "data_path", type=click.Path(path_type=Path), required=True,
              help="Evaluation data (.npz or a folder of .npz): inputs, 'labels', 'meta_*' arrays to slice by.")
@click.option("--modality", type=click.Choice(["image", "text", "tabular"]), required=True,
              help="Which shifts apply to the data.")
@click.option("--report", "report_dir", type=click.Path(path_type=Path), help="Write the report (and results.json) here.")
@click.option("--metric", type=click.Choice(["auto", "accuracy", "agreement"]), default="auto", show_default=True,
              help="accuracy needs labels; agreement compares with the float model on unshifted data.")
@click.option("--shift", "shift_names", multiple=True, help="Only this shift (repeatable); default: all of the modality.")
@click.option("--severities", help="Comma-separated severities in [0, 1] (default 0,0.25,0.5,0.75,1).")
@click.option("--threshold", type=float, help="Quality below which a variant counts as broken (default: 90 %% of float).")
@click.option("--slice", "slice_names", multiple=True, help="Slice by 'label', a metadata key or 'length' (repeatable).")
@click.option("--layout", type=click.Choice(["NCHW", "NHWC", "NHW"]), help="Image layout (default: detected).")
@click.option("--value-range", help="Image value range LOW,HIGH (default: detected).")
@click.option("--calib", type=click.Path(path_type=Path),
              help="Calibration data: also measure static-int8 against calibration distribution and size.")
@click.option("--calibration-sizes", help="Comma-separated calibration set sizes (default 8,16,...,1024).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every shift.")
def robustness(model_path: Path, variant_paths: tuple[Path, ...], data_path: Path, modality: str,
               report_dir: Path | None, metric: str, shift_names: tuple[str, ...], severities: str | None,
               threshold: float | None, slice_names: tuple[str, ...], layout: str | None, value_range: str | None,
               calib: Path | None, calibration_sizes: str | None, seed: int) -> None:
    """Evaluate MODEL_PATH and quantized VARIANT_PATHS under shifted data: where does each break?"""
    import quantscope as qs
    from quantscope.analysis.results import Results
    from quantscope.analysis.robustness import DEFAULT_CALIBRATION_SIZES, DEFAULT_SEVERITIES
    from quantscope.analysis.robustness import robustness as run_robustness
    from quantscope.errors import ConfigError

    def dataset(path: Path) -> qs.Dataset:
        return qs.Dataset.from_folder(path) if path.is_dir() else qs.Dataset.from_npz(path)

    model = qs.load(model_path)
    variants: dict[str, qs.Model] = {}
    for path in variant_paths:
        name = path.name.removesuffix(".onnx")
        if name in variants or name == "float":
            name = f"{name}-{len(variants) + 1}"
        variants[name] = qs.load(path)
    data = dataset(data_path)
    if metric == "auto":
        metric = "accuracy" if data.labels is not None else "agreement"
    bounds = _floats(value_range, "--value-range")
    if bounds is not None and len(bounds) != 2:
        raise ConfigError(f"--value-range takes LOW,HIGH, got {value_range!r}")
    sizes = _floats(calibration_sizes, "--calibration-sizes")
    with progress_bar("evaluating") as update:
        rob = run_robustness(
            model, variants, data, modality=modality, metric=metric, shifts=list(shift_names) or None,
            severities=_floats(severities, "--severities") or DEFAULT_SEVERITIES, threshold=threshold,
            slices=list(slice_names) or None, seed=seed, layout=layout,
            value_range=(bounds[0], bounds[1]) if bounds else None,
            calibration=dataset(calib) if calib is not None else None,
            calibration_sizes=[int(v) for v in sizes] if sizes else DEFAULT_CALIBRATION_SIZES,
            progress=update,
        )
    clean = {p.variant: p.quality[rob.metric] for p in rob.shifts if p.severity == 0.0}
    results = Results(
        model={"name": model_path.name, "path": str(model_path), "fingerprint": model.fingerprint},
        data={"name": data_path.name, "samples": rob.samples, "labels": data.labels is not None},
        metric=rob.metric,
        variants=[_variant_result(name, path, m, {rob.metric: clean[name]})
                  for name, path, m in [("float", model_path, model),
                                        *zip(variants, variant_paths, variants.values(), strict=True)]],
        robustness=rob,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    table = Table(title=f"{rob.metric} at the strongest severity; breaking point (threshold "
                        f"{rob.threshold:.3g})", show_edge=False)
    table.add_column("shift")
    names = ["float", *variants]
    for name in names:
        table.add_column(name, justify="right")
    for shift, row in rob.breaking_points.items():
        top = max(p.severity for p in rob.shifts if p.shift == shift)
        cells = []
        for name in names:
            value = next(p.quality[rob.metric] for p in rob.shifts
                         if (p.shift, p.variant, p.severity) == (shift, name, top))
            bp = row.get(name)
            cells.append(f"{value:.3g} ({'never' if bp is None else f'{bp:g}'})")
        table.add_row(shift, *cells)
    console.print(table)
    for sentence in rob.limitations:
        console.print(f"- {escape(sentence)}", highlight=False)
    if report_dir is not None:
        _write_report(results, report_dir)


def _write_report(results: Any, report_dir: Path) -> None:
    from quantscope.report import render

    written = render(results, report_dir)
    console.print(f"report written to {escape(str(written / 'index.html'))}", highlight=False)


def _variant_result(name: str, path: Path, model: Any, quality: dict[str, float]) -> Any:
    from quantscope.analysis.results import VariantResult

    sidecar = path.with_name(path.stem + ".quantscope.json")
    config = None
    if sidecar.is_file():
        try:
            config = json.loads(sidecar.read_text()).get("config")
        except (OSError, json.JSONDecodeError, AttributeError):
            config = None
    return VariantResult(
        name=name, kind="float" if name == "float" else "onnx", path=str(path),
        method=config.get("method") if isinstance(config, dict) else None, config=config,
        size_bytes=path.stat().st_size, param_bytes=model.parameter_bytes(), quality=quality,
    )



# --- analyze / sweep -----------------------------------------------------------------------------

ANALYZE_METRICS = ("auto", "accuracy", "top5", "agreement", "cosine", "cosine_min", "sqnr_db", "kl",
                   "max_abs", "mean_abs")


@contextmanager
def step_progress(description: str) -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress bar whose description follows the step being worked on."""
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=True, disable=not err_console.is_terminal,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(what: str, done: int, total: int) -> None:
            bar.update(task, description=escape(what), completed=done, total=total)

        yield update


def _max_drop(text: str | None) -> float | None:
    """``1%`` or ``0.01`` → 0.01 (a fraction of the float model's quality)."""
    from quantscope.errors import ConfigError

    if text is None:
        return None
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        raise ConfigError(f"--max-drop takes a percentage like 1% or a fraction like 0.01, not {text!r}") from None
    if not 0 <= value < 1:
        raise ConfigError(f"--max-drop {text!r} is out of range; give a percentage below 100%, e.g. 1% or 0.01")
    return value


def _dataset(path: Path) -> Any:
    import quantscope as qs

    return qs.Dataset.from_folder(path) if path.is_dir() else qs.Dataset.from_npz(path)


def _analysis_options(runs: int, batch: int, top: int, samples: int, memory: bool, latency: bool,
                      seed: int, sensitivity_variants: tuple[str, ...] = ()) -> Any:
    from quantscope.analysis.compare import AnalysisOptions

    return AnalysisOptions(
        runs=runs, batch_sizes=(1, batch), sensitivity=top, sensitivity_samples=samples, memory=memory,
        latency=latency, seed=seed, sensitivity_variants=sensitivity_variants or None,
    )


def _show_results(results: Any, report_dir: Path | None) -> None:
    """The terminal table, the report files, and the quality gate (exit 4) last."""
    from quantscope.analysis.compare import quality_gate
    from quantscope.report.text import render_text

    console.print(render_text(results))
    for v in results.variants:
        for w in v.warnings:
            err_console.print(f"[yellow]warning:[/] {escape(v.name)}: {escape(w)}", highlight=False)
    for note in results.notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    if report_dir is not None:
        _write_report(results, report_dir)
    if results.max_drop is not None:
        ok = quality_gate(results)
        console.print(f"within the {results.max_drop:.2%} budget: {', '.join(v.name for v in ok)}", highlight=False)


def _analysis_flags(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed((
        click.option("--data", "data_path", type=click.Path(path_type=Path), required=True,
                     help="Evaluation data (.npz or a folder of .npz); 'labels' enable accuracy."),
        click.option("--metric", type=click.Choice(ANALYZE_METRICS), default="auto", show_default=True,
                     help="Primary quality metric (auto: accuracy with labels, else top-1 agreement)."),
        click.option("--report", "report_dir", type=click.Path(path_type=Path),
                     help="Write index.html, summary.md and results.json here."),
        click.option("--max-drop", help="Quality budget, e.g. 1% (of the float value): exit 4 if no variant meets it."),
        click.option("--top", type=int, default=5, show_default=True,
                     help="Nodes measured for per-layer sensitivity (0: none)."),
        click.option("--samples", type=int, default=128, show_default=True,
                     help="Evaluation samples per sensitivity measurement."),
        click.option("--runs", type=int, default=30, show_default=True, help="Timed runs per latency measurement."),
        click.option("--batch", type=int, default=32, show_default=True, help="The larger latency batch."),
        click.option("--memory/--no-memory", default=True, show_default=True,
                     help="Measure peak memory in a fresh process per variant."),
        click.option("--latency/--no-latency", default=True, show_default=True, help="Measure latency."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of every sample subset."),
    )):
        f = option(f)
    return f


@main.command()
@click.argument("model_path", type=click.Path(path_type=Path))
@click.argument("variant_paths", nargs=-1, type=click.Path(path_type=Path))
@_analysis_flags
@click.option("--calib", type=click.Path(path_type=Path), help="Calibration data, to re-quantize for sensitivity.")
@click.option("--sensitivity", "sensitivity_variants", multiple=True,
              help="Variant to measure sensitivity for (repeatable); default: the one that loses most.")
def analyze(model_path: Path, variant_paths: tuple[Path, ...], data_path: Path, metric: str, report_dir: Path | None,
            max_drop: str | None, top: int, samples: int, runs: int, batch: int, memory: bool, latency: bool,
            seed: int, calib: Path | None, sensitivity_variants: tuple[str, ...]) -> None:
    """Measure MODEL_PATH and its quantized VARIANT_PATHS side by side on --data."""
    import quantscope as qs

    budget = _max_drop(max_drop)
    options = _analysis_options(runs, batch, top, samples, memory, latency, seed, sensitivity_variants)
    model = qs.load(model_path)
    data = _dataset(data_path)
    with step_progress("analyzing") as update:
        results = qs.analyze(model, list(variant_paths), data, metric=metric, max_drop=budget,
                             calib=_dataset(calib) if calib is not None else None, options=options,
                             progress=update)
    _show_results(results, report_dir)


@main.command()
@click.argument("model_path", type=click.Path(path_type=Path))
@click.option("--calib", type=click.Path(path_type=Path), required=True, help="Calibration data (.npz or folder).")
@_analysis_flags
@click.option("-m", "--method", "methods", multiple=True, help="Only this method (repeatable); default: every one.")
@click.option("--robustness", "with_robustness", is_flag=True,
              help="Also evaluate every variant under shifted data (needs --modality).")
@click.option("--modality", type=click.Choice(["image", "text", "tabular"]),
              help="The data's modality, for --robustness.")
@click.option("--backend", type=click.Choice(["onnx", "tflite"]), default="onnx", show_default=True,
              help="tflite: MODEL_PATH is a .keras file or SavedModel; the TFLite converter's variants "
                   "(dynamic range, full integer, float16) are measured beside quantscope's.")
def sweep(model_path: Path, calib: Path, data_path: Path, metric: str, report_dir: Path | None, max_drop: str | None,
          top: int, samples: int, runs: int, batch: int, memory: bool, latency: bool, seed: int,
          methods: tuple[str, ...], with_robustness: bool, modality: str | None, backend: str) -> None:
    """Quantize MODEL_PATH with every method and calibrator, and measure them all on --data."""
    import quantscope as qs
    from quantscope.errors import ConfigError, OutputError

    budget = _max_drop(max_drop)
    if with_robustness and modality is None:
        raise ConfigError("--robustness needs --modality image, text or tabular")
    options = _analysis_options(runs, batch, top, samples, memory, latency, seed)
    calib_data, eval_data = _dataset(calib), _dataset(data_path)
    if backend == "tflite":
        from quantscope.importers import from_path

        with progress_bar("converting to ONNX") as update:
            update(0, 1)
            model = from_path(model_path, _example_inputs(calib_data))
            update(1, 1)
    else:
        model = qs.load(model_path)
    rob = {"modality": modality} if with_robustness else None
    with step_progress("sweeping") as update:
        results = qs.sweep(model, calib_data, eval_data, methods=list(methods) or None, metric=metric,
                           max_drop=budget, options=options, seed=seed, robustness=rob, progress=update)
    if backend == "tflite":
        from quantscope.backends import tflite

        out = (report_dir or Path(".")) / "tflite"
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {out} for the .tflite files: {exc.strerror or exc}") from exc
        with progress_bar("TFLite converter variants") as update:
            update(0, 1)
            tfl = tflite.convert_keras(model_path, out, calib=calib_data, seed=seed, stem=model_path.stem)
            results = tflite.add_to_results(results, model, tfl, eval_data, options=options)
            update(1, 1)
    _show_results(results, report_dir)


@main.command()
@click.argument("model_path", type=click.Path(path_type=Path))
@click.option("--calib", type=click.Path(path_type=Path), required=True, help="Calibration data (.npz or folder).")
@click.option("--data", "data_path", type=click.Path(path_type=Path), required=True,
              help="Evaluation data (.npz or a folder of .npz); 'labels' enable accuracy.")
@click.option("--max-drop", required=True, help="Quality budget, e.g. 1% (of the float value): exit 4 if nothing meets it.")
@click.option("--objective", type=click.Choice(["size", "latency"]), default="size", show_default=True,
              help="What to minimize inside the budget: size on disk, or batch-1 one-thread latency.")
@click.option("--metric", type=click.Choice(ANALYZE_METRICS), default="auto", show_default=True,
              help="Primary quality metric (auto: accuracy with labels, else top-1 agreement).")
@click.option("-m", "--method", "methods", multiple=True, help="Only this method (repeatable); default: the usual candidates.")
@click.option("--max-float-nodes", type=int, default=8, show_default=True,
              help="At most this many nodes kept in float to meet the budget.")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write the chosen model (and its sidecar JSON) here.")
@click.option("--report", "report_dir", type=click.Path(path_type=Path),
              help="Write the candidates' report (index.html, summary.md, results.json) here.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every sample subset.")
def tune(model_path: Path, calib: Path, data_path: Path, max_drop: str, objective: str, metric: str,
         methods: tuple[str, ...], max_float_nodes: int, output: Path | None, report_dir: Path | None, seed: int) -> None:
    """Find the smallest (or fastest) configuration of MODEL_PATH within --max-drop, and say why."""
    import quantscope as qs
    from quantscope.errors import QualityGateError

    budget = _max_drop(max_drop)
    model = qs.load(model_path)
    calib_data, eval_data = _dataset(calib), _dataset(data_path)
    try:
        with step_progress("tuning") as update:
            best = qs.tune(model, calib_data, eval_data, max_drop=budget, objective=objective, metric=metric,
                           methods=list(methods) or None, max_float_nodes=max_float_nodes, seed=seed,
                           progress=update)
    except QualityGateError as exc:
        for line in getattr(exc, "reasons", []):
            console.print(f"- {escape(line)}", highlight=False)
        if report_dir is not None and getattr(exc, "results", None) is not None:
            _write_report(exc.results, report_dir)  # type: ignore[attr-defined]
        raise
    for line in best.reasons:
        console.print(f"- {escape(line)}", highlight=False)
    for note in best.results.notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    if report_dir is not None:
        _write_report(best.results, report_dir)
    if output is not None:
        written = best.quantized.save(output)
        console.print(f"wrote {escape(str(written))} ({best.name})", highlight=False)
    else:
        console.print(f"best: {escape(best.name)} (write it with -o)", highlight=False)


def _example_inputs(data: Any) -> Any:
    """A few samples of ``data`` as a framework importer's example inputs (positional if one input)."""
    batch = next(iter(data.batches(4)))
    arrays = dict(batch.inputs)
    return next(iter(arrays.values())) if len(arrays) == 1 else arrays


@main.command()
@click.argument("results_path", type=click.Path(path_type=Path))
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path),
              help="Where to write index.html, summary.md and results.json (default: beside RESULTS_PATH).")
def report(results_path: Path, out_dir: Path | None) -> None:
    """Re-render the report (index.html, summary.md) from a results.json written by analyze or sweep."""
    from quantscope.report import load_results, render
    from quantscope.report.text import render_text

    results = load_results(results_path)
    if out_dir is None:
        out_dir = results_path if results_path.is_dir() else results_path.parent
    written = render(results, out_dir)
    console.print(render_text(results))
    console.print(f"report written to {escape(str(written / 'index.html'))}", highlight=False)


@main.command()
@click.argument("source")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Output .onnx path.")
@click.option("--example", "example_path", type=click.Path(path_type=Path),
              help="Example inputs (.npz keyed by input name, or one array); fixes input types and checks the import.")
@click.option("--samples", type=int, default=16, show_default=True, help="Example samples to use from --example.")
@click.option("--trust", is_flag=True,
              help="Allow loading pickle/joblib files and Keras files with code: loading them runs that code.")
@click.option("--opset", type=int, help="ONNX opset to export (default: the converter's).")
@click.option("--default-ops", is_flag=True,
              help="scikit-learn: write linear models and scalers as MatMul graphs (quantizable), not ai.onnx.ml ops.")
@click.option("--rtol", type=float, default=1e-3, show_default=True, help="Relative tolerance of the output check.")
@click.option("--atol", type=float, default=1e-4, show_default=True, help="Absolute tolerance of the output check.")
def convert(source: str, output: Path, example_path: Path | None, samples: int, trust: bool, opset: int | None,
            default_ops: bool, rtol: float, atol: float) -> None:
    """Convert a PyTorch, Keras/TensorFlow or scikit-learn model to a checked ONNX file.

    SOURCE is a .keras/.h5 file, a SavedModel directory, a pickle/joblib file (needs --trust),
    or 'module:function' (also 'file.py:function') returning (model, example_inputs).
    """
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    import numpy as np

    import quantscope as qs
    from quantscope.errors import ConfigError
    from quantscope.importers import from_path, is_factory_spec, load_factory, to_onnx
    from quantscope.io import check_output_path

    check_output_path(output)
    example: Any = None
    if example_path is not None:
        try:
            with np.load(example_path, allow_pickle=False) as npz:
                arrays = {k: npz[k][:samples] for k in npz.files if k != "labels" and not k.startswith("meta_")}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read --example {example_path}: {exc}") from exc
        example = next(iter(arrays.values())) if len(arrays) == 1 else arrays
    kwargs: dict[str, Any] = {"rtol": rtol, "atol": atol}
    if opset is not None:
        kwargs["opset"] = opset
    if default_ops:
        kwargs["default_ops"] = True
    if is_factory_spec(source):
        if str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))  # like `python -m`: modules beside you import
        obj, made_example = load_factory(source)
        model = to_onnx(obj, example if example is not None else made_example, **kwargs)
    else:
        model = from_path(source, example, trust=trust, **kwargs)
    written = qs.save(model, output)
    qs.load(written)  # what we wrote loads and validates
    ops = ", ".join(f"{op} {n}" for op, n in model.op_histogram().items())
    console.print(f"[green]wrote[/] {escape(str(written))} ({_fmt_bytes(written.stat().st_size)}), opset {model.opset}")
    for kind, specs in (("input", model.inputs), ("output", model.outputs)):
        for spec in specs:
            console.print(f"  {kind} {escape(spec.describe())}", highlight=False)
    console.print(f"  operators: {escape(ops)}", highlight=False)
    for note in model.notes:
        console.print(f"  {escape(note)}", highlight=False)


if __name__ == "__main__":
    main()
