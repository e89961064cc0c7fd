"""Hydra entry points: train, explain, robustness, report, reproduce, and run (chains them)."""

from pipeline.resolvers import register_resolvers

register_resolvers()
