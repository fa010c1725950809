"""Post-training analysis: compare variants, per-layer error and sensitivity, energy, memory, sweep.

One evaluator (:mod:`~quantscope.analysis.evaluate`), one metric registry
(:mod:`~quantscope.analysis.quality`), one budget rule (:mod:`~quantscope.analysis.budget`) and one
recommender (:mod:`~quantscope.analysis.recommend`) serve every analysis and every report.
"""

from quantscope.analysis.compare import AnalysisOptions, analyze, quality_gate
from quantscope.analysis.recommend import Recommendation, recommend
from quantscope.analysis.sweep import sweep, sweep_configs

__all__ = ["AnalysisOptions", "Recommendation", "analyze", "quality_gate", "recommend", "sweep", "sweep_configs"]
