"""The one machine-readable line every bench script ends with.

``emit("explain", ratios, absolute)`` prints

    {"bench": "explain", "commit": "71769f5", "ratios": {...}, "absolute": {...}}

as the script's last line, so figures can be collected and compared across commits
(`python bench/bench_x.py | tail -1 >> figures.jsonl`). Ratios are rounded to 4 decimals, floats in
``absolute`` to 6 significant digits (a difference of 1.8e-10 stays 1.8e-10, not 0.0); the load average at the end of the run is added to ``absolute`` (the machine's
load explains most drift between two such lines), and ``load_average_start`` when the caller
passes it. NaN and infinity become null (JSON has neither).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def commit() -> str | None:
    """Short hash of the checkout being measured (None outside git), with ``+dirty`` for local edits."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def _decimals(number: float, digits: int) -> float:
    return round(number, digits)


def _significant(number: float, digits: int) -> float:
    return float(f"{number:.{digits}g}")


def _clean(value: object, digits: int, rounding=_decimals) -> object:
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float) or hasattr(value, "__float__"):
        number = float(value)  # numpy scalars too
        return rounding(number, digits) if math.isfinite(number) else None
    if isinstance(value, Mapping):
        return {str(k): _clean(v, digits, rounding) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v, digits, rounding) for v in value]
    return str(value)


def line(bench: str, ratios: Mapping[str, object], absolute: Mapping[str, object]) -> str:
    """The JSON line for `bench` (see the module docstring)."""
    absolute = {**absolute}
    absolute.setdefault("load_average_end", os.getloadavg()[0])
    return json.dumps({"bench": bench, "commit": commit(), "ratios": _clean(dict(ratios), 4),
                       "absolute": _clean(absolute, 6, _significant)})


def emit(bench: str, ratios: Mapping[str, object], absolute: Mapping[str, object]) -> None:
    """Print `line(...)`: call it last, so the JSON is the script's final output line."""
    print(line(bench, ratios, absolute), flush=True)


def paired(rounds: list[Mapping[str, float]], num: str, den: str) -> tuple[float, float, float]:
    """Median, lowest and highest over rounds of num/den, each ratio within one round (a drifting
    host hits both sides of one round alike)."""
    ratios = [r[num] / r[den] for r in rounds]
    return statistics.median(ratios), min(ratios), max(ratios)
