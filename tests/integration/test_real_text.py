"""Real text through the default pipeline, as a new user runs it: long sentences up to
data.max_length, hostile strings and non-ASCII text, every default explain method, the console a
user sees, short run ids, and no temp folder left behind by any stage (success or failure).

One real `pipeline.run` (a subprocess, exactly the README's command) serves every test here.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from mlflow import MlflowClient

from glassworks.tracking.logged_model import run_model_id

from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.slow

CLASSES = {
    "sport": "match goal team coach league season striker keeper referee stadium derby fans",
    "weather": "rain storm cloud forecast wind snow sunny thunder humid frost drizzle fog",
    "cooking": "oven recipe flour butter simmer garlic sauce knead roast pepper whisk crêpe",
    "music": "guitar chord melody concert drummer album lyrics tempo choir violin encore band",
}
FILLER = ("the a of and to in was it that with for on yesterday really quite some "
          "über naïve café 東京 Ünïcödé ✓ — «quoted» ").split()
HOSTILE = [
    '<script>alert("x")</script>', "<img src=x onerror=alert(1)>", "</td></tr></table>", '"double" \'single\'',
    "back\\slash", "tab\there", "bell\x07char", "nul-ish \x1b[31mred\x1b[0m", "{{ jinja }} {% raw %}",
    "&amp; &lt;b&gt;", "zero\u200bwidth", "right\u202eleft", "emoji 🙂🚀",
]
MAX_LENGTH = 64  # data.max_length: the longest texts fill it, so every method sees full-length inputs
NOISE = [
    "Downloading artifacts", "litlogger", "litmodels", "weights_only", "Inferred schema contains integer",
    "CloudPickle", "cloudpickle", "pytree", "no explainer named", "Traceback", "UserWarning",
    "FutureWarning", "DeprecationWarning",
    # Lightning's model summary (a FLOPs column of zeros, the metric objects) and its no-TPU line
    "FLOPs", "MulticlassAccuracy", "TPU available",
]


def _text(rng: random.Random, label: str, n_words: int) -> str:
    words = CLASSES[label].split()
    out = [rng.choice(words) if rng.random() < 0.4 else rng.choice(FILLER) for _ in range(n_words)]
    if rng.random() < 0.3:
        out.insert(rng.randrange(len(out)), rng.choice(HOSTILE))
    return " ".join(out)


def _write_split(path: Path, rng: random.Random, n: int) -> None:
    import csv

    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["review", "topic"])
        for i in range(n):
            label = list(CLASSES)[i % len(CLASSES)]
            # Lengths from a few words to well past max_length tokens (truncated, counted).
            writer.writerow([_text(rng, label, rng.choice([4, 12, 30, 50, MAX_LENGTH + 20])), label])


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("realtext")
    tmpdir = root / "tmp"
    tmpdir.mkdir()
    rng = random.Random(0)
    for split, n in (("train", 480), ("validation", 80), ("test", 80)):
        _write_split(root / f"{split}.csv", rng, n)
    out = run_cli(
        "pipeline.run", "data=files", f"data.source.train={root}/train.csv",
        f"data.source.validation={root}/validation.csv", f"data.source.test={root}/test.csv",
        "data.source.text_column=review", "data.source.label_column=topic", f"data.max_length={MAX_LENGTH}",
        "data.tokenizer.min_frequency=1", "trainer=cpu", "trainer.max_epochs=3",
        "explain.n_examples=8", "explain.shap.max_evals=100", "robustness.stability_examples=2",
        "robustness.n_stability=1", "robustness.curve_k=5", "robustness.attack.n_candidates=5",
        "logger.system_metrics=false", cwd=root, env={"TMPDIR": str(tmpdir)}, timeout=900,
    )
    client = MlflowClient(f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return {"root": root, "tmpdir": tmpdir, "out": out, "client": client, "runs": runs}


def _leftovers(tmpdir: Path) -> list[str]:
    return sorted(p.name for p in tmpdir.iterdir() if p.name.startswith("glassworks-"))


def test_real_text_runs_to_finished_with_every_default_method(real_run):
    out = real_run["out"]
    assert out.returncode == 0, out.stderr[-4000:]
    (run,) = real_run["runs"]
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    for method in ("shap", "raw_attention", "rollout", "flow", "grad_attention", "input_x_gradient"):
        assert f"explain/{method}/comprehensiveness" in metrics, method
        assert metrics[f"explain/{method}/n_skipped"] == 0, method  # long inputs are explained, not skipped
    table = real_run["client"].download_artifacts(run.info.run_id, "explanations/attributions.parquet",
                                                  str(real_run["root"]))
    import pandas as pd

    frame = pd.read_parquet(table)
    lengths = frame[frame["method"] == "flow"].groupby("example_id")["position"].max() + 1
    assert 32 < lengths.max() <= MAX_LENGTH  # flow ran past the old 32-token cap
    assert frame["score"].notna().all()
    client = real_run["client"]
    model_files = {a.path for a in client.list_logged_model_artifacts(run_model_id(client, run.info.run_id))}
    assert "pyfunc_code.py" in model_files and "python_model.pkl" not in model_files


def test_default_run_console_is_quiet_and_ends_with_where_to_look(real_run):
    out = real_run["out"]
    console = out.stdout + out.stderr
    for noise in NOISE:
        assert noise not in console, (noise, console[-6000:])
    (run,) = real_run["runs"]
    tail = "\n".join(out.stdout.strip().splitlines()[-8:])  # the last lines a user reads
    assert run.info.run_id in tail and "http://127.0.0.1:5000/#/experiments/" in tail
    assert "report:" in tail and ".html" in tail
    # The project's own progress is still there.
    assert "explain flow" in console and "robustness" in console
    assert "model.blocks" in console and "Params: " in console  # the model table (callbacks.model_summary)


def test_no_temp_folder_left_by_the_run(real_run):
    assert _leftovers(real_run["tmpdir"]) == []


def test_later_stages_take_short_ids_and_leave_no_temp_folder(real_run):
    root, tmpdir = real_run["root"], real_run["tmpdir"]
    (run,) = real_run["runs"]
    short = run.info.run_id[:8]
    env = {"TMPDIR": str(tmpdir)}
    report = run_cli("pipeline.report", f"run_id={short}", "logger.system_metrics=false", cwd=root, env=env)
    assert report.returncode == 0, report.stderr[-3000:]
    assert run.info.run_id in report.stdout and "report:" in report.stdout
    assert _leftovers(tmpdir) == []
    explain = run_cli("pipeline.explain", f"run_id={short}", "explain.methods=[rollout,flow]",
                      "explain.n_examples=4", "explain.n_heatmaps=0", "logger.system_metrics=false", cwd=root,
                      env=env)
    assert explain.returncode == 0, explain.stderr[-3000:]
    assert "explanations logged to " in explain.stderr + explain.stdout
    assert _leftovers(tmpdir) == []
    # A stage that dies half-way cleans up too (the fault raises inside the report stage).
    failed = run_cli("pipeline.report", f"run_id={short}", "logger.system_metrics=false", cwd=root,
                     env={**env, "GLASSWORKS_FAULT": "raise:report",
                          "PYTHONPATH": f"{ROOT / 'tests' / 'faults'}:{ROOT}"})
    assert failed.returncode != 0 and "injected failure in the report stage" in failed.stderr
    assert _leftovers(tmpdir) == []
