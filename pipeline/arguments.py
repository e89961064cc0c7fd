"""The command line as Hydra should read it.

Hydra's override grammar reads a bare value as YAML would: ``run_id=57e84031`` (an 8-character
prefix of a run id, as the consoles print them) is the float ``inf`` and ``run_id=12e45678`` the
float 1.2e+46; 1.3% of 200,000 random prefixes came back as another text. The keys that name a
run are quoted before Hydra parses them, so they stay the text typed.

A config group's option read as YAML fails the same way: ``debug=true`` became the boolean true,
which Hydra refused with a 25-line traceback ("Config group override must be a string or a
list. Got bool"). Quoted, it is an option name Hydra looks up, and a wrong one gets Hydra's
one-line "Could not find 'debug/true'" with the group's options.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

RUN_ID_KEYS = ("run_id", "sweep_id", "resume", "reproduce.against")  # config keys that name a run

_ID_ARGUMENT = re.compile(rf"^(\+{{0,2}})({'|'.join(map(re.escape, RUN_ID_KEYS))})=(.+)$")
_BARE = re.compile(r"[0-9A-Za-z_-]+")
_YAML_WORDS = {"null", "true", "false"}  # resume=null|false: no resume, kept as Hydra reads them
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
# Bare group values YAML reads as something other than a name (null stays: it deselects the group).
_NOT_A_NAME = re.compile(r"(?i:true|false|yes|no|on|off)|[-+]?[0-9][0-9_]*(\.[0-9_]*)?(e[-+]?[0-9]+)?")


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


def config_groups(conf_dir: Path = CONF_DIR) -> set[str]:
    """The config groups under `conf_dir` (``model``, ``hydra/launcher``, ...): its folders."""
    return {str(p.relative_to(conf_dir)) for p in conf_dir.rglob("*") if p.is_dir()}


def group_choices_as_text(arguments: Sequence[str], groups: Iterable[str]) -> list[str]:
    """`arguments` with each config group's bare option that YAML would read as a boolean or a
    number quoted: ``debug=true`` -> ``debug='true'``, an option name (unknown, so Hydra lists the
    group's options in one line). Everything else is left as given."""
    names = "|".join(sorted(map(re.escape, groups), key=len, reverse=True))
    if not names:
        return list(arguments)
    choice = re.compile(rf"^(\+{{0,2}})({names})=([^'\"]+)$")
    quoted = []
    for argument in arguments:
        match = choice.match(argument)
        if match and all(_NOT_A_NAME.fullmatch(w) for w in match.group(3).split(",")):
            prefix, group, value = match.groups()
            argument = f"{prefix}{group}=" + ",".join(f"'{w}'" for w in value.split(","))
        quoted.append(argument)
    return quoted
