"""Robustness under acquisition shift: the corruptions (no torch) and their evaluation."""
