"""Hydra entry points: train, explain, robustness, report, reproduce, and run (chains them)."""

import sys

from glassworks.startup import imports_done, pause_for_imports

# `python -m pipeline.<entry>`, a sweep worker, a DDP rank: the imports that follow run without the
# cyclic collector, and the job's first statement, imports_done(), turns it back on.
pause_for_imports()

from glassworks.console import hydra_errors_point_to_debug_traceback, quiet_dependencies
from pipeline.arguments import config_groups, group_choices_as_text, ids_as_text
from pipeline.resolvers import register_resolvers

quiet_dependencies()
hydra_errors_point_to_debug_traceback(sys.argv)
sys.argv[1:] = ids_as_text(sys.argv[1:])  # run_id=57e84031 stays text, not the float inf
sys.argv[1:] = group_choices_as_text(sys.argv[1:], config_groups())  # debug=true: an option name
register_resolvers()


__all__ = ["imports_done"]
