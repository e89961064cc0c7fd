"""Helpers that tests and benchmarks share (never imported by the library itself)."""
