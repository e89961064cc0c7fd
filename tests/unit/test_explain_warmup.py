"""The background warm-up compiles every shap kernel our SHAP path needs, without running shap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from glassworks.explain.warmup import start_shap_warmup

ROOT = Path(__file__).resolve().parents[2]

# In a fresh process (numba compiles per process): warm up, then explain with every algorithm and
# list any shap kernel signature that the explain still had to compile.
SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from glassworks.explain.warmup import start_shap_warmup
    np.random.seed(11)
    state = np.random.get_state()[1].copy()
    warmup = start_shap_warmup(["partition", "exact", "permutation"])
    assert warmup.wait(300), "warm-up did not finish"
    assert warmup.error is None, repr(warmup.error)
    rng_untouched = bool(np.array_equal(np.random.get_state()[1], state))
    from numba.core.registry import CPUDispatcher
    from glassworks.explain.shap import ShapExplainer
    from tests.unit.tiny_explain_model import tiny_model
    from tests.unit.test_explain_batcher import example

    def signatures():
        found = {}
        for name, mod in list(sys.modules.items()):
            if name.startswith("shap") and mod is not None:
                for value in vars(mod).values():
                    if isinstance(value, CPUDispatcher):
                        found[value.__module__ + "." + value.__name__] = {str(s) for s in value.signatures}
        return found

    before = signatures()
    model = tiny_model()
    examples = [example(8, 0, 0), example(6, 1, 1)]
    for algorithm in ("partition", "exact", "permutation"):
        ShapExplainer(algorithm=algorithm, max_evals=100).explain(model, examples)
        ShapExplainer(algorithm=algorithm, max_evals=100, concurrent_examples=1).explain(model, examples[:1])
    after = signatures()
    new = {k: sorted(v - before.get(k, set())) for k, v in after.items() if v - before.get(k, set())}
    print(json.dumps({"new": new, "rng_untouched": rng_untouched, "compiled": sum(map(len, before.values()))}))
""")


def test_explain_after_the_warmup_compiles_nothing_new():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["compiled"] >= 5  # masks (2), Partition's lower_credit (2), Exact's grey code (1)
    assert report["new"] == {}, f"kernels compiled after the warm-up: {report['new']}"
    assert report["rng_untouched"]  # training runs beside the warm-up and uses numpy's global RNG


def test_warmup_rejects_an_unknown_algorithm():
    with pytest.raises(ValueError, match="algorithm must be one of"):
        start_shap_warmup(["kernel"])


def test_a_failed_warmup_is_reported_not_raised(monkeypatch):
    import glassworks.explain.warmup as warmup_module

    def broken(algorithm):
        raise ImportError("no shap here")

    monkeypatch.setattr(warmup_module, "_signatures", broken)
    warmup = start_shap_warmup(["partition"])
    assert warmup.wait(60)
    assert isinstance(warmup.error, ImportError) and warmup.seconds is not None
    assert np.isfinite(warmup.seconds)
