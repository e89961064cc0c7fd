"""shap's numba kernels: Partition and Permutation compile none, Exact exactly what
`compile_shap_kernels` compiles ahead; Partition's masks built by numpy equal shap's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import scipy.cluster.hierarchy
from shap.utils import make_masks

from glassworks.explain.shap import contiguous_partition_tree, dense_coalition_masks
from glassworks.explain.shap_kernels import compile_shap_kernels

ROOT = Path(__file__).resolve().parents[2]

# In a fresh process (numba compiles per process): optionally compile ahead, then explain with
# `algorithm` and list every shap kernel signature compiled by then.
SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from numba.core.registry import CPUDispatcher
    from glassworks.explain.shap import ShapExplainer
    from glassworks.explain.shap_kernels import compile_shap_kernels
    from tests.unit.tiny_explain_model import tiny_model
    from tests.unit.test_explain_batcher import example

    def signatures():
        found = {}
        for name, mod in list(sys.modules.items()):
            if name.startswith("shap") and mod is not None:
                for value in vars(mod).values():
                    if isinstance(value, CPUDispatcher) and value.signatures:
                        found[value.__module__ + "." + value.__name__] = sorted(map(str, value.signatures))
        return found

    algorithm, ahead = sys.argv[1], sys.argv[2] == "ahead"
    np.random.seed(11)
    state = np.random.get_state()[1].copy()
    if ahead:
        compile_shap_kernels((algorithm,))
    rng_untouched = bool(np.array_equal(np.random.get_state()[1], state))
    before = signatures()
    model = tiny_model()
    examples = [example(8, 0, 0), example(6, 1, 1)]
    ShapExplainer(algorithm=algorithm, max_evals=100).explain(model, examples)
    ShapExplainer(algorithm=algorithm, max_evals=100, concurrent_examples=1).explain(model, examples[:1])
    print(json.dumps({"before": before, "after": signatures(), "rng_untouched": rng_untouched}))
""")


def _kernels(algorithm: str, ahead: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, algorithm, "ahead" if ahead else "not-ahead"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("algorithm", ["partition", "permutation"])
def test_partition_and_permutation_compile_no_kernel(algorithm):
    """No process pays numba's ~5 s compilation for the default algorithm."""
    report = _kernels(algorithm, ahead=False)
    assert report["after"] == {}, f"{algorithm} compiled shap kernels: {report['after']}"


def test_exact_compiles_only_what_compile_shap_kernels_compiled_ahead():
    report = _kernels("exact", ahead=True)
    assert list(report["before"]) == ["shap.explainers._exact._compute_grey_code_row_values"]
    assert report["after"] == report["before"]  # the explain compiled nothing new
    assert report["rng_untouched"]  # compiling runs nothing


def test_compile_shap_kernels_rejects_an_unknown_algorithm():
    with pytest.raises(ValueError, match="algorithm must be one of"):
        compile_shap_kernels(("kernel",))


@pytest.mark.parametrize("n", [1, 2, 3, 16, 33, 128])
def test_dense_masks_equal_shaps_masks_for_our_trees(n):
    clustering = contiguous_partition_tree(n)
    np.testing.assert_array_equal(dense_coalition_masks(clustering), make_masks(clustering).toarray())


def test_dense_masks_equal_shaps_masks_for_any_linkage():
    """Not only our contiguous trees: a scipy linkage of random points merges far-apart features."""
    points = np.random.default_rng(0).normal(size=(40, 3))
    clustering = scipy.cluster.hierarchy.linkage(points, method="average")
    masks = dense_coalition_masks(clustering)
    np.testing.assert_array_equal(masks, make_masks(clustering).toarray())
    assert masks[-1].all()  # the root holds every feature


def test_dense_masks_refuse_a_row_that_refers_to_a_later_cluster():
    clustering = contiguous_partition_tree(4).copy()  # rows 0-2 make clusters 4-6
    clustering[0, 1] = 6
    with pytest.raises(ValueError, match="refers to a cluster made after it"):
        dense_coalition_masks(clustering)
