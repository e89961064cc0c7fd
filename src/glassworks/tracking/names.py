"""File and folder names made from run names, sweep names, config keys or data.

Such names come from the command line, a config file or a tracking store someone else wrote; a
``run_name=../../x`` must not write outside the folder it was meant for. Every place that turns
one into a path goes through :func:`safe_name`.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: object, fallback: str = "unnamed", max_chars: int = 80, replacement: str = "-") -> str:
    """One path component: only ``[A-Za-z0-9._-]`` (anything else, ``/``, ``\\`` and NUL included,
    becomes ``replacement``), no ``..``, no leading dot, at most ``max_chars`` characters;
    ``fallback`` when nothing is left."""
    cleaned = _UNSAFE.sub(replacement, str(name)).strip(replacement)
    cleaned = re.sub(r"\.{2,}", ".", cleaned).lstrip(".").strip(replacement)[:max_chars]
    return cleaned.strip(f"{replacement}.") or fallback
