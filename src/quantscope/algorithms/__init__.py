"""Algorithms that recover accuracy rounding loses, one small module each.

* :mod:`.range_selection` — per-tensor range choice that is never worse than min-max
  (``calibration="auto"``), input protection, and warnings when a chosen range clips heavily;
* :mod:`.activation_stats` — the extra calibration statistics these algorithms read
  (per-feature means and magnitudes, input second moments ``XᵀX``);
* :mod:`.gptq` — Hessian-aware column-wise rounding with error feedback (Frantar et al. 2023);
* :mod:`.awq` — activation-aware per-input-channel scale search (Lin et al. 2024);
* :mod:`.smoothquant` — moves activation outlier channels into the weights (Xiao et al. 2023);
* :mod:`.bias_correction` — removes the mean output shift weight rounding adds (Nagel et al. 2019);
* :mod:`.equalization` — cross-layer equalization of Conv → Relu → Conv pairs (Nagel et al. 2019).

The methods call them; each algorithm is pure NumPy on arrays and statistics and knows nothing
about graphs beyond what its caller hands it.
"""
