"""The one number format of every page, report, Markdown table and console table."""

from __future__ import annotations

import math
from typing import Any


def fmt(value: Any, digits: int = 4) -> str:
    """A number as text: `digits` decimals for values in [1e-3, 100), fewer for big values,
    scientific for tiny ones; ints as ints (thousands separated from 10,000); None as "–";
    NaN/inf as "nan"/"inf"/"-inf"; anything else as ``str(value)``.

    ``digits=4`` is the default of pages and reports; the reproduction check prints
    ``fmt(v, digits=10)`` so that values that differ in the 7th decimal look different.
    """
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return "nan"
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    magnitude = abs(number)
    if magnitude >= 10_000:
        return f"{number:,.{max(digits - 4, 0)}f}"
    if magnitude >= 100:
        return f"{number:.{max(digits - 3, 1)}f}"
    if 0 < magnitude < 1e-3:
        return f"{number:.{max(digits - 2, 1)}e}"
    return f"{number:.{digits}f}"
