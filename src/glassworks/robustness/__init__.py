"""Robustness probes: deletion curves, attribution-guided perturbations."""
