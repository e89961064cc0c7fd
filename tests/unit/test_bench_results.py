"""Every benchmark ends with one machine-readable JSON line (bench/results.py)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
# Helpers the benchmarks import, and the mutation tool (which prints a score table, not figures).
NOT_BENCHMARKS = {"results.py", "generation_floor.py", "mutation.py"}


def _results():
    spec = importlib.util.spec_from_file_location("bench_results", BENCH / "results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_line_is_json_with_rounded_finite_numbers_and_the_commit():
    results = _results()
    parsed = json.loads(results.line("explain", {"a_over_b": 1 / 3, "broken": float("nan")},
                                     {"seconds": np.float32(2.5), "repeats": 5, "per_repeat": [1.234567891, 2.0],
                                      "device": "cpu", "warm": True, "inf": math.inf, "difference": 1.8e-10,
                                      "ms": 2691.09975}))
    assert parsed["bench"] == "explain"
    assert parsed["ratios"] == {"a_over_b": 0.3333, "broken": None}  # JSON has no NaN
    absolute = parsed["absolute"]
    assert absolute["seconds"] == 2.5 and absolute["repeats"] == 5 and absolute["per_repeat"] == [1.23457, 2.0]
    assert absolute["difference"] == 1.8e-10 and absolute["ms"] == 2691.1  # 6 significant digits
    assert absolute["device"] == "cpu" and absolute["warm"] is True and absolute["inf"] is None
    assert isinstance(absolute["load_average_end"], float)
    assert parsed["commit"] is None or parsed["commit"].split("+")[0].isalnum()


def test_emit_prints_exactly_one_line(capsys):
    _results().emit("train", {"ours_over_loop": 0.97}, {})
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and json.loads(out)["ratios"] == {"ours_over_loop": 0.97}


def test_every_benchmark_ends_with_the_json_line():
    scripts = sorted(p for p in BENCH.glob("*.py") if p.name not in NOT_BENCHMARKS)
    assert len(scripts) >= 9
    for script in scripts:
        text = script.read_text()
        assert "from bench.results import emit" in text, script.name
        assert text.count("emit(") >= 1, script.name
        assert "json.dumps(" not in text, f"{script.name}: print figures through bench.results.emit"
