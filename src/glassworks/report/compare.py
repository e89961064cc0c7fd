"""Compare the final metrics of a run and its reproduction.

Timing, throughput and system metrics measure the machine, not the model, and are never compared
(:data:`glassworks.tracking.contract.MACHINE_METRICS`), nor are the patterns a user adds
(``reproduce.exclude``). Everything else must agree within ``atol + rtol * |original|``; a metric
present in only one of the two runs is a difference.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from glassworks.tracking.contract import MACHINE_METRICS


@dataclass
class MetricComparison:
    key: str
    original: float | None
    reproduced: float | None
    abs_diff: float | None
    ok: bool

    @property
    def status(self) -> str:
        if self.original is None:
            return "only in reproduction"
        if self.reproduced is None:
            return "missing in reproduction"
        if not self.ok:
            return "DIFFERS"
        return "same" if not self.abs_diff else "close"


@dataclass
class ComparisonResult:
    rows: list[MetricComparison]
    excluded: list[str]  # metric keys left out by the exclusion patterns

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    @property
    def n_differ(self) -> int:
        return sum(not r.ok for r in self.rows)


def excluded(key: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def compare_metrics(original: Mapping[str, float], reproduced: Mapping[str, float], rtol: float = 0.0,
                    atol: float = 1e-6, exclude: Sequence[str] = ()) -> ComparisonResult:
    """Every final metric of the two runs, but the machine's and those matching `exclude`."""
    if rtol < 0 or atol < 0:
        raise ValueError(f"reproduce.rtol and reproduce.atol must be >= 0, got rtol={rtol}, atol={atol}")
    exclude = (*MACHINE_METRICS, *exclude)
    rows, skipped = [], []
    for key in sorted(set(original) | set(reproduced)):
        if excluded(key, exclude):
            skipped.append(key)
            continue
        a, b = original.get(key), reproduced.get(key)
        if a is None or b is None:
            rows.append(MetricComparison(key, a, b, None, False))
            continue
        if math.isnan(a) or math.isnan(b):
            rows.append(MetricComparison(key, a, b, None, math.isnan(a) and math.isnan(b)))
            continue
        if a == b:  # also inf == inf, whose difference would be nan
            rows.append(MetricComparison(key, a, b, 0.0, True))
            continue
        diff = abs(a - b)
        rows.append(MetricComparison(key, a, b, diff, diff <= atol + rtol * abs(a)))
    return ComparisonResult(rows, skipped)
