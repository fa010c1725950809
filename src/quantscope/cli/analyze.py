"""``analyze``, ``sweep``, ``tune``, ``robustness``, ``report`` and ``demo``: measure variants, write reports."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from quantscope.cli.data_options import DataOptions, data_options
from quantscope.cli.names import configs_for
from quantscope.cli.options import (
    ANALYZE_METRICS,
    analysis_flags,
    analysis_options,
    dataset,
    executor_flags,
    job_executor,
    output_names,
    parse_floats,
    parse_max_drop,
)
from quantscope.cli.output import (
    console,
    progress_bar,
    safe,
    say,
    show_results,
    step_progress,
    warn,
    write_report,
)
from quantscope.errors import DataError
from quantscope.output_paths import check_output_dir

_MODALITIES = ("image", "text", "tabular")


def checked_results(path: Path) -> Any:
    """A ``results.json`` read for ``report``: bounded JSON first (size, depth, UTF-8), then the schema.

    Exit 3 (:class:`DataError`) for a file that is not what analyze or sweep wrote, tampered ones
    included. (The schema's own checks, types and ranges of numbers, belong to
    ``quantscope.analysis.results.Results.load``.)
    """
    from quantscope.cli.files import absurd_number, read_json_file
    from quantscope.reporting import load_results

    file = path / "results.json" if path.is_dir() else path
    if file.is_file():
        bad = absurd_number(read_json_file(file, "results file", DataError, allow_nan=True))
        if bad is not None:
            raise DataError(f"results file {file} holds a number no analysis writes ({bad}); it was edited or "
                            "corrupted: re-create it with 'quantscope analyze' or 'quantscope sweep'")
    try:
        return load_results(path)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError, RecursionError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"results file {file} does not match the results schema ({type(exc).__name__}: {exc}); "
                        "re-create it with 'quantscope analyze' or 'quantscope sweep'") from exc


@click.command()
@click.argument("model_path", type=click.Path(path_type=Path, readable=False))
@click.argument("variant_paths", nargs=-1, type=click.Path(path_type=Path, readable=False))
@analysis_flags
@click.option("--calib", type=click.Path(path_type=Path, readable=False), help="Calibration data, to re-quantize for sensitivity.")
@click.option("--sensitivity", "sensitivity_variants", multiple=True,
              help="Variant to measure sensitivity for (repeatable); default: the recommended int8 variant.")
@click.option("--backend", type=click.Choice(["onnx", "openvino"]), default="onnx", show_default=True,
              help="openvino: also run every model with OpenVINO's CPU runtime (rows '<name> [openvino]').")
@data_options()
def analyze(model_path: Path, variant_paths: tuple[Path, ...], data_path: Path, metric: str, report_dir: Path | None,
            max_drop: str | None, top: int, samples: int, runs: int, batch: int, memory: bool, latency: bool,
            seed: int, output_names: tuple[str, ...], calib: Path | None,
            sensitivity_variants: tuple[str, ...], backend: str, data_options: DataOptions) -> None:
    """Measure MODEL_PATH and its quantized VARIANT_PATHS side by side on --data."""
    import quantscope as qs

    budget = parse_max_drop(max_drop)
    options = analysis_options(runs, batch, top, samples, memory, latency, seed, sensitivity_variants)
    model = qs.load(model_path)
    data = dataset(data_path, data_options, "--data")
    with step_progress("analyzing") as update:
        results = qs.analyze(model, list(variant_paths), data, metric=metric, max_drop=budget,
                             calib=dataset(calib, data_options, "--calib") if calib is not None else None, options=options,
                             progress=update, output=list(output_names) or None)
    if backend == "openvino":
        from quantscope.backends import openvino

        results = openvino.add_to_results(results, model, data, options=options)
    show_results(results, report_dir)


@click.command()
@click.argument("model_path", type=click.Path(path_type=Path, readable=False))
@click.option("--calib", type=click.Path(path_type=Path, readable=False), required=True, help="Calibration data (.npz, a folder of .npz or images, a .txt of texts).")
@analysis_flags
@click.option("-m", "--method", "methods", multiple=True, metavar="METHOD[/CALIBRATOR]",
              help="Only this method or variant, e.g. static-int8 or static-int8/minmax (repeatable); default: every one.")
@click.option("--save-models", "save_dir", type=click.Path(path_type=Path, readable=False),
              help="Keep every quantized model of the sweep here (<model>.<variant>.onnx with its sidecar).")
@click.option("--robustness", "with_robustness", is_flag=True,
              help="Also evaluate every variant under shifted data (needs --modality).")
@click.option("--modality", type=click.Choice(_MODALITIES), help="The data's modality, for --robustness.")
@click.option("--backend", type=click.Choice(["onnx", "tflite", "openvino"]), default="onnx", show_default=True,
              help="tflite: MODEL_PATH is a .keras file or SavedModel; the TFLite converter's variants "
                   "(dynamic range, full integer, float16) are measured beside quantscope's. openvino: every "
                   "model is also run by OpenVINO's CPU runtime (the variants are saved under REPORT_DIR/openvino).")
@executor_flags
@data_options()
def sweep(model_path: Path, calib: Path, data_path: Path, metric: str, report_dir: Path | None, max_drop: str | None,
          top: int, samples: int, runs: int, batch: int, memory: bool, latency: bool, seed: int,
          output_names: tuple[str, ...], methods: tuple[str, ...], save_dir: Path | None, with_robustness: bool,
          modality: str | None, backend: str, scheduler: str | None, workers: int | None,
          data_options: DataOptions) -> None:
    """Quantize MODEL_PATH with every method and calibrator, and measure them all on --data."""
    import quantscope as qs
    from quantscope.errors import ConfigError, OutputError
    from quantscope.workflows import example_inputs

    budget = parse_max_drop(max_drop)
    if with_robustness and modality is None:
        raise ConfigError("--robustness needs --modality image, text or tabular")
    if save_dir is not None:
        check_output_dir(save_dir)
    options = analysis_options(runs, batch, top, samples, memory, latency, seed)
    calib_data, eval_data = dataset(calib, data_options, "--calib"), dataset(data_path, data_options, "--data")
    if backend == "tflite":
        from quantscope.importers import from_path

        with progress_bar("converting to ONNX") as update:
            update(0, 1)
            model = from_path(model_path, example_inputs(calib_data))
            update(1, 1)
    else:
        model = qs.load(model_path)
    rob = {"modality": modality} if with_robustness else None
    if save_dir is None and backend == "openvino":
        save_dir = (report_dir or Path(".")) / "openvino"
    with job_executor(scheduler, workers) as executor, step_progress("sweeping") as update:
        results = qs.sweep(model, calib_data, eval_data, methods=configs_for(methods, seed), metric=metric,
                           max_drop=budget, options=options, seed=seed, robustness=rob, progress=update,
                           save_dir=save_dir, output=list(output_names) or None, executor=executor)
    if backend == "openvino":
        from quantscope.backends import openvino

        results = openvino.add_to_results(results, model, eval_data, options=options)
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
    show_results(results, report_dir)
    if not any(v.name != "float" for v in results.variants):
        from quantscope.analysis.sweep import all_failed_error

        raise all_failed_error(results.notes)


@click.command()
@click.argument("model_path", type=click.Path(path_type=Path, readable=False))
@click.option("--calib", type=click.Path(path_type=Path, readable=False), required=True, help="Calibration data (.npz, a folder of .npz or images, a .txt of texts).")
@click.option("--data", "data_path", type=click.Path(path_type=Path, readable=False), required=True,
              help="Evaluation data (.npz or a folder of .npz); 'labels' enable accuracy.")
@click.option("--max-drop", required=True, help="Quality budget, e.g. 1% (of the float value): exit 4 if nothing meets it.")
@click.option("--objective", type=click.Choice(["size", "latency"]), default="size", show_default=True,
              help="What to minimize inside the budget: size on disk, or batch-1 one-thread latency.")
@click.option("--metric", type=click.Choice(ANALYZE_METRICS), default="auto", show_default=True,
              help="Primary quality metric (auto: accuracy with labels, else top-1 agreement).")
@click.option("-m", "--method", "methods", multiple=True, metavar="METHOD[/CALIBRATOR]",
              help="Only this method or variant, e.g. static-int8 or static-int8/minmax (repeatable); "
                   "default: the usual candidates.")
@click.option("--max-float-nodes", type=int, default=8, show_default=True,
              help="At most this many nodes kept in float to meet the budget.")
@click.option("-o", "--output", type=click.Path(), help="Write the chosen model (and its sidecar JSON) here.")
@click.option("--report", "report_dir", type=click.Path(path_type=Path, readable=False),
              help="Write the candidates' report (index.html, summary.md, results.json) here.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every sample subset.")
@output_names("--output-name")
@executor_flags
@data_options()
def tune(model_path: Path, calib: Path, data_path: Path, max_drop: str, objective: str, metric: str,
         methods: tuple[str, ...], max_float_nodes: int, output: str | None, report_dir: Path | None, seed: int,
         output_names: tuple[str, ...], scheduler: str | None, workers: int | None, data_options: DataOptions) -> None:
    """Find the smallest (or fastest) configuration of MODEL_PATH within --max-drop, and say why."""
    import quantscope as qs
    from quantscope.errors import QualityGateError

    budget = parse_max_drop(max_drop)
    model = qs.load(model_path)
    inputs = [model_path, *model.data_files, calib, data_path]
    if output is not None:  # refused before minutes of tuning, not after
        from quantscope.model_io import check_output_path, out_data_name
        from quantscope.quantization import sidecar_path

        check_output_path(output, *inputs, siblings=[sidecar_path(output).name, out_data_name(output)])
    calib_data, eval_data = dataset(calib, data_options, "--calib"), dataset(data_path, data_options, "--data")
    try:
        with job_executor(scheduler, workers) as executor, step_progress("tuning") as update:
            best = qs.tune(model, calib_data, eval_data, max_drop=budget, objective=objective, metric=metric,
                           methods=configs_for(methods, seed), max_float_nodes=max_float_nodes, seed=seed,
                           progress=update, output=list(output_names) or None, executor=executor)
    except QualityGateError as exc:
        for line in getattr(exc, "reasons", []):
            say(f"- {line}")
        if report_dir is not None and getattr(exc, "results", None) is not None:
            write_report(exc.results, report_dir)  # type: ignore[attr-defined]
        raise
    for line in best.reasons:
        say(f"- {line}")
    for note in best.results.notes:
        warn(note, "note")
    if report_dir is not None:
        write_report(best.results, report_dir)
    if output is not None:
        written = best.quantized.save(output, inputs=inputs)
        say(f"wrote {written} ({best.name})")
    else:
        say(f"best: {best.name} (write it with -o)")


@click.command()
@click.argument("model_path", type=click.Path(path_type=Path, readable=False))
@click.argument("variant_paths", nargs=-1, type=click.Path(path_type=Path, readable=False))
@click.option("--data", "data_path", type=click.Path(path_type=Path, readable=False), required=True,
              help="Evaluation data (.npz or a folder of .npz): inputs, 'labels', 'meta_*' arrays to slice by.")
@click.option("--modality", type=click.Choice(_MODALITIES), required=True, help="Which shifts apply to the data.")
@click.option("--report", "report_dir", type=click.Path(path_type=Path, readable=False), help="Write the report (and results.json) here.")
@click.option("--metric", type=click.Choice(["auto", "accuracy", "agreement"]), default="auto", show_default=True,
              help="accuracy needs labels; agreement compares with the float model on unshifted data.")
@click.option("--shift", "shift_names", multiple=True, help="Only this shift (repeatable); default: all of the modality.")
@click.option("--severities", help="Comma-separated severities in [0, 1] (default 0,0.25,0.5,0.75,1).")
@click.option("--threshold", type=float, help="Quality below which a variant counts as broken (default: 90 %% of float).")
@click.option("--slice", "slice_names", multiple=True, help="Slice by 'label', a metadata key or 'length' (repeatable).")
@click.option("--layout", type=click.Choice(["NCHW", "NHWC", "NHW"]),
              help="Image layout (default: detected); a folder of images is also read in it (NCHW or NHWC).")
@click.option("--value-range", help="Image value range LOW,HIGH (default: detected).")
@click.option("--calib", type=click.Path(path_type=Path, readable=False),
              help="Calibration data: also measure static-int8 against calibration distribution and size.")
@click.option("--calibration-sizes", help="Comma-separated calibration set sizes (default 8,16,...,1024).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every shift.")
@output_names("--output", "--output-name")
@executor_flags
@data_options(layout=False)
def robustness(model_path: Path, variant_paths: tuple[Path, ...], data_path: Path, modality: str,
               report_dir: Path | None, metric: str, shift_names: tuple[str, ...], severities: str | None,
               threshold: float | None, slice_names: tuple[str, ...], layout: str | None, value_range: str | None,
               calib: Path | None, calibration_sizes: str | None, seed: int, output_names: tuple[str, ...],
               scheduler: str | None, workers: int | None, data_options: DataOptions) -> None:
    """Evaluate MODEL_PATH and quantized VARIANT_PATHS under shifted data: where does each break?"""
    import quantscope as qs
    from quantscope.analysis.robustness import DEFAULT_CALIBRATION_SIZES, DEFAULT_SEVERITIES
    from quantscope.analysis.robustness import robustness as run_robustness
    from quantscope.errors import ConfigError
    from quantscope.workflows import load_variants, robustness_results, robustness_table

    model = qs.load(model_path)
    variants = load_variants(variant_paths)
    if layout in ("NCHW", "NHWC"):  # images are read in the layout the shifts are told
        data_options = dataclasses.replace(data_options, layout=layout)
    data = dataset(data_path, data_options, "--data")
    if metric == "auto":
        metric = "accuracy" if data.labels is not None else "agreement"
    bounds = parse_floats(value_range, "--value-range")
    if bounds is not None and len(bounds) != 2:
        raise ConfigError(f"--value-range takes LOW,HIGH, got {value_range!r}")
    sizes = parse_floats(calibration_sizes, "--calibration-sizes")
    with job_executor(scheduler, workers) as executor, progress_bar("evaluating") as update:
        rob = run_robustness(
            model, variants, data, modality=modality, metric=metric, shifts=list(shift_names) or None,
            severities=parse_floats(severities, "--severities") or DEFAULT_SEVERITIES, threshold=threshold,
            slices=list(slice_names) or None, seed=seed, layout=layout,
            value_range=(bounds[0], bounds[1]) if bounds else None,
            calibration=dataset(calib, data_options, "--calib") if calib is not None else None,
            calibration_sizes=[int(v) for v in sizes] if sizes else DEFAULT_CALIBRATION_SIZES,
            progress=update, output=list(output_names) or None, executor=executor,
        )
    results = robustness_results(rob, model, model_path, variants, variant_paths, data_path, data.labels is not None)
    names = ["float", *variants]
    table = Table(title=f"{rob.metric} at the strongest severity; breaking point (threshold "
                        f"{rob.threshold:.3g})", show_edge=False)
    table.add_column("shift")
    for name in names:
        table.add_column(name, justify="right")
    for shift, cells in robustness_table(rob, names):
        table.add_row(shift, *cells)
    console.print(safe(table))
    for sentence in rob.limitations:
        say(f"- {sentence}")
    if report_dir is not None:
        write_report(results, report_dir)


@click.command()
@click.argument("results_path", type=click.Path(path_type=Path, readable=False))
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path, readable=False),
              help="Where to write index.html, summary.md and results.json (default: beside RESULTS_PATH).")
def report(results_path: Path, out_dir: Path | None) -> None:
    """Re-render the report (index.html, summary.md) from a results.json written by analyze or sweep."""
    from quantscope.reporting import render
    from quantscope.reporting.text import render_text

    results = checked_results(results_path)
    if out_dir is None:
        out_dir = results_path if results_path.is_dir() else results_path.parent
    else:
        check_output_dir(out_dir)
    try:
        text = safe(render_text(results))
        written = render(results, out_dir)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError, RecursionError) as exc:
        raise DataError(f"{results_path} holds values the report cannot show ({type(exc).__name__}: {exc}); "
                        "re-create it with 'quantscope analyze' or 'quantscope sweep'") from exc
    console.print(text)
    say(f"report written to {written / 'index.html'}")


@click.command()
@click.option("--out", "out_dir", type=click.Path(path_type=Path, readable=False), default=Path("quantscope-demo"), show_default=True,
              help="Where to write the quantized models and the report.")
def demo(out_dir: Path) -> None:
    """Sweep every method on the bundled example (a digits CNN) and write the report."""
    from quantscope.demo import run_demo

    check_output_dir(out_dir)
    with step_progress("sweeping the digits CNN") as update:
        results, report_dir = run_demo(out_dir, progress=update)
    show_results(results, None)
    page = report_dir / "index.html"
    where = page if page.exists() else report_dir / "results.json"
    say(f"models written to {out_dir / 'models'}/")
    say(f"report: {where}")
