"""What a run changed relative to the defaults: a flat key-by-key comparison of two configs.

The caller composes the default config (with Hydra, in the entry point) and hands plain dicts
here: the run's resolved config and the defaults' resolved values, plus which default keys are
interpolations (``data.seed: ${seed}``) so a value that merely follows another override is
marked as such, and which keys describe locations (output folders, the store) and are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

ABSENT = object()  # a key one of the two configs does not have


def flatten_values(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> {"a.b.c": value}, keeping value types (lists stay lists)."""
    return dict(_walk(config, prefix))


def _walk(node: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, Any]]:
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from _walk(value, f"{name}.")
        else:
            yield name, value


def show(value: Any) -> str:
    """A config value as YAML would print it (null, true, [a, b])."""
    if value is ABSENT:
        return "(not set)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    return str(value)


@dataclass
class ConfigChange:
    key: str
    default: Any
    value: Any
    follows: str | None  # the default's interpolation when the change just follows another key

    @property
    def derived(self) -> bool:
        return self.follows is not None


def config_diff(run: Mapping[str, Any], defaults: Mapping[str, Any], interpolations: Mapping[str, str] | None = None,
                skip: set[str] | frozenset[str] = frozenset(), skip_prefixes: tuple[str, ...] = ()) -> list[ConfigChange]:
    """Keys whose value differs between the run's and the default config (flat dicts), sorted.

    `interpolations` maps default keys to their raw interpolation (``${seed}``); `skip` and
    `skip_prefixes` name keys that are not experiment settings (paths, runtime folders).
    """
    interpolations = interpolations or {}
    run, defaults = _collapse(run, defaults), _collapse(defaults, run)
    changes = []
    for key in sorted(set(run) | set(defaults)):
        if key in skip or key.startswith(skip_prefixes):
            continue
        value, default = run.get(key, ABSENT), defaults.get(key, ABSENT)
        if _same(value, default):
            continue
        follows = interpolations.get(key) if value is not ABSENT and default is not ABSENT else None
        changes.append(ConfigChange(key, default, value, follows))
    # Direct changes first, the values that follow them (data.seed after seed) after.
    return sorted(changes, key=lambda c: (c.derived, c.key))


def _collapse(flat: Mapping[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    """Fold ``flat``'s keys under a key that is a leaf in ``other`` back into one nested value,
    so ``callbacks.x: null`` against ``callbacks.x._target_: ...`` is one row, not two."""
    leaves = [k for k in other if any(f.startswith(f"{k}.") for f in flat)]
    if not leaves:
        return dict(flat)
    out = {k: v for k, v in flat.items() if not any(k.startswith(f"{leaf}.") for leaf in leaves)}
    for leaf in leaves:
        nested: dict[str, Any] = {}
        for k, v in flat.items():
            if k.startswith(f"{leaf}."):
                node = nested
                *parents, last = k[len(leaf) + 1:].split(".")
                for p in parents:
                    node = node.setdefault(p, {})
                node[last] = v
        out[leaf] = nested
    return out


def _same(a: Any, b: Any) -> bool:
    if a is ABSENT or b is ABSENT:
        return a is b
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return a == b
