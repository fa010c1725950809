"""Post-training analysis: compare variants, per-layer error and sensitivity, energy, memory, sweep."""

from quantscope.analysis.compare import AnalysisOptions, analyze, quality_gate
from quantscope.analysis.sweep import sweep, sweep_configs

__all__ = ["AnalysisOptions", "analyze", "quality_gate", "sweep", "sweep_configs"]
