"""Hydra entry points: train, explain, robustness, report, reproduce, and run (chains them)."""

import sys

from glassworks.console import hydra_errors_point_to_debug_traceback, quiet_dependencies
from pipeline.resolvers import register_resolvers

quiet_dependencies()
hydra_errors_point_to_debug_traceback(sys.argv)
register_resolvers()
