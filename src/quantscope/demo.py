"""The bundled example end to end: sweep every method on the digits CNN and write the report."""

from __future__ import annotations

import logging
from pathlib import Path

from quantscope.analysis.compare import AnalysisOptions, StepProgress
from quantscope.analysis.results import Results
from quantscope.analysis.sweep import sweep
from quantscope.data import Dataset
from quantscope.examples import DIGITS_CALIB, DIGITS_EVAL, DIGITS_MODEL, example_path
from quantscope.io import load

logger = logging.getLogger(__name__)

INTEGER_KERNELS = ("QLinearConv", "QLinearMatMul", "MatMulInteger", "MatMulIntegerToFloat", "QGemm",
                   "QLinearAdd", "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearConcat",
                   "ConvInteger", "DynamicQuantizeMatMul")

DEMO_OPTIONS = AnalysisOptions(
    batch_sizes=(1, 32), threads=(1, None), warmup=3, runs=10, memory=True, layer_samples=16,
    sensitivity=3, sensitivity_samples=128, calib_samples=64,
)
"""Fewer timing runs and samples than the defaults, so the demo stays short even on a small machine."""


def integer_kernels(op_counts: dict[str, int]) -> dict[str, int]:
    return {op: n for op, n in op_counts.items() if op in INTEGER_KERNELS}


def run_demo(
    out_dir: Path, *, options: AnalysisOptions | None = None, progress: StepProgress | None = None
) -> tuple[Results, Path]:
    """Sweep the bundled digits CNN; models go to ``out_dir/models``, the report to ``out_dir``.

    Returns the results and the report directory. Without the report renderers installed,
    only ``results.json`` is written.
    """
    model = load(example_path(DIGITS_MODEL))
    calib = Dataset.from_npz(example_path(DIGITS_CALIB))
    evaluation = Dataset.from_npz(example_path(DIGITS_EVAL))
    results = sweep(model, calib, evaluation, options=options or DEMO_OPTIONS, save_dir=out_dir / "models",
                    progress=progress)
    try:
        from quantscope.reporting import render
    except ImportError:
        logger.warning("the report renderers are not available; writing results.json only")
        out_dir.mkdir(parents=True, exist_ok=True)
        results.save(out_dir / "results.json")
        return results, out_dir
    return results, render(results, out_dir)
