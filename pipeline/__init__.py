"""Hydra entry points: train, explain, robustness, report, reproduce, and run (chains them)."""

import gc
import sys

if sys.argv[:1] == ["-m"]:
    # `python -m pipeline.<entry>`: the entry's imports follow (torch, Lightning, MLflow: millions of
    # objects, none of them garbage). The collector scanned them again and again while they were
    # made, and once more when the process ended (~3 s of a default run, bench/README.md);
    # imports_done() turns it back on.
    gc.disable()

from glassworks.console import hydra_errors_point_to_debug_traceback, quiet_dependencies
from pipeline.resolvers import register_resolvers

quiet_dependencies()
hydra_errors_point_to_debug_traceback(sys.argv)
register_resolvers()


def imports_done() -> None:
    """Every entry point's ``__main__`` block calls this before its work: the objects made so far
    (modules, classes, functions) move to the collector's permanent generation, which no
    collection scans, not even the one at exit, and collection resumes for what the work makes."""
    gc.freeze()
    gc.enable()
