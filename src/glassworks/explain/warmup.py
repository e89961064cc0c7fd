"""Compile shap's numba kernels ahead of the explain stage, in a background thread.

shap's kernels are ``@njit`` without ``cache=True``, so numba compiles them in every process on
their first call (~5 s on 2 cores, most of the first SHAP example's time). Forcing numba's disk
cache on them (``enable_caching()``) made the next process that loaded the cache segfault, so
instead the pipeline starts `start_shap_warmup` before training: the import of shap and the
compilation run in a daemon thread while the model trains, and the explain stage finds the
kernels ready.

The warm-up compiles exactly the signatures our SHAP path (`glassworks.explain.shap`: float64
outputs (N, C), boolean masks) makes numba compile, via
``dispatcher.compile(signature)``: nothing is executed and numpy's global RNG, which training
and the resume checkpoint use, is never touched. tests/unit/test_explain_warmup.py checks, in a
fresh process, that an explain after the warm-up compiles nothing new (a shap upgrade that
changes a kernel's signature fails there rather than silently losing the warm-up).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

ALGORITHMS = ("partition", "exact", "permutation")


def _signatures(algorithm: str) -> list[tuple[object, tuple]]:
    """(dispatcher, argument types) pairs that explaining with `algorithm` compiles."""
    from numba import types  # numba comes with shap
    from shap.explainers import _exact, _partition
    from shap.utils import _masked_model

    f64_1 = types.Array(types.float64, 1, "C")
    f64_2 = types.Array(types.float64, 2, "C")
    i64_1 = types.Array(types.int64, 1, "C")
    b_1 = types.Array(types.boolean, 1, "C")
    i64 = types.int64
    # Every algorithm: the coalition masks of the hierarchy (shap builds them even without one).
    # MaskedModel's output kernels (_build_fixed_*) and the link are never compiled: our masked
    # rows come out of RowsAtOnceMaskedModel, which does not call them.
    sigs: list[tuple[object, tuple]] = [
        (_masked_model._init_masks, (f64_2, i64, i64_1, i64_1)),
        (_masked_model._rec_fill_masks, (f64_2, i64_1, i64_1, i64_1, i64, i64)),
    ]
    if algorithm == "partition":
        sigs += [(_partition.lower_credit, (i64, i64, i64, f64_2, f64_2)),
                 (_partition.lower_credit, (i64, f64_1, i64, f64_2, f64_2))]
    elif algorithm == "exact":
        sigs += [(_exact._compute_grey_code_row_values, (f64_2, b_1, i64_1, f64_2, f64_1, i64_1, i64))]
    elif algorithm != "permutation":
        raise ValueError(f"shap warm-up: algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    return sigs


def compile_shap_kernels(algorithms: Iterable[str] = ("partition",)) -> int:
    """Import shap and compile its kernels for `algorithms` in this thread; returns how many."""
    compiled = 0
    for algorithm in algorithms:
        for dispatcher, sig in _signatures(algorithm):
            dispatcher.compile(sig)
            compiled += 1
    return compiled


@dataclass
class ShapWarmup:
    """A running or finished warm-up: `wait()` for it, `seconds` it took, `error` if it failed."""

    algorithms: tuple[str, ...]
    thread: threading.Thread | None = None
    seconds: float | None = None
    error: BaseException | None = None
    _done: threading.Event = field(default_factory=threading.Event)

    def _run(self) -> None:
        start = time.perf_counter()
        try:
            n = compile_shap_kernels(self.algorithms)
            log.debug("shap warm-up: %d kernels compiled in %.1f s", n, time.perf_counter() - start)
        except BaseException as exc:  # a failed warm-up only means explain compiles on first use
            self.error = exc
            log.warning("shap warm-up failed (%s: %s); the explain stage will compile the kernels itself",
                        type(exc).__name__, exc)
        finally:
            self.seconds = time.perf_counter() - start
            self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the warm-up ended (True) or `timeout` passed (False)."""
        return self._done.wait(timeout)


def start_shap_warmup(algorithms: Iterable[str] = ("partition",)) -> ShapWarmup:
    """Start compiling shap's kernels in a daemon thread and return at once."""
    algorithms = tuple(algorithms)
    for algorithm in algorithms:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"shap warm-up: algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    warmup = ShapWarmup(algorithms)
    warmup.thread = threading.Thread(target=warmup._run, name="shap-warmup", daemon=True)
    warmup.thread.start()
    return warmup
