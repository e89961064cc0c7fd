"""Which of shap's numba kernels our SHAP path compiles, and compiling them ahead of use.

shap's kernels are ``@njit`` without ``cache=True``, so numba compiles them in every process on
their first call (forcing numba's disk cache on them with ``enable_caching()`` made the next
process that loaded the cache segfault). Partition's kernels (the coalition masks and
``lower_credit``) cost ~5 s on 2 cores that way, so `glassworks.explain.shap` does not call them:
it builds the masks with numpy and runs ``lower_credit`` as Python, and Partition and Permutation
compile nothing. Exact's grey-code kernel loops over all 2^M coalitions, which only compiled code
does fast: it still compiles on Exact's first call (~4.5 s).

There is no background warm-up. Compiling during training in a thread cost the fit more than it
saved the explain stage: the compiler is Python holding the GIL, and with torch's two threads on
two cores, a 471-step fit took 19-24 s beside it instead of 13-16 s (bench/README.md).
`compile_shap_kernels` compiles in the calling thread; the test fork server calls it before it
forks, so forked test commands inherit Exact's compiled kernel. tests/unit/test_shap_kernels.py
checks, in fresh processes, that an explain compiles exactly these signatures (a shap upgrade that
changes a kernel's signature or calls a new one fails there).
"""

from __future__ import annotations

ALGORITHMS = ("partition", "exact", "permutation")


def _signatures(algorithm: str) -> list[tuple[object, tuple]]:
    """(dispatcher, argument types) pairs that explaining with `algorithm` compiles."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"shap kernels: algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if algorithm != "exact":
        return []
    from numba import types  # numba comes with shap
    from shap.explainers import _exact

    f64_1 = types.Array(types.float64, 1, "C")
    f64_2 = types.Array(types.float64, 2, "C")
    i64_1 = types.Array(types.int64, 1, "C")
    b_1 = types.Array(types.boolean, 1, "C")
    return [(_exact._compute_grey_code_row_values, (f64_2, b_1, i64_1, f64_2, f64_1, i64_1, types.int64))]


def compile_shap_kernels(algorithms: tuple[str, ...] = ALGORITHMS) -> int:
    """Compile, in this thread, the shap kernels that explaining with `algorithms` needs; returns
    how many. Nothing is executed: numpy's global RNG is never touched."""
    compiled = 0
    for algorithm in algorithms:
        for dispatcher, sig in _signatures(algorithm):
            dispatcher.compile(sig)
            compiled += 1
    return compiled
