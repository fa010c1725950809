"""Post-training analysis: running models over data, fidelity, latency."""
