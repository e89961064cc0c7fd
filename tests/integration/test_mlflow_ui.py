"""The real MLflow 3 UI (``mlflow server`` on loopback, headless Chromium) shows a run as a user
finds it: the link the command printed opens the Model training view, the run page lists the
run's logged model (ready, with the test split as its metrics' dataset), the experiment's Models
tab lists it, and the run's ``explanations/index.html`` opens from the artifact view.

The UI is a React app: ``--dump-dom`` after a virtual-time budget gives the rendered DOM. The
artifact view shows an HTML artifact in a sandboxed iframe filled from ``/get-artifact``; that
request, answered by the server with the logged file, is what "opens" means here, next to the
iframe and the selected path in the DOM. ``GLASSWORKS_UI_SCREENSHOTS=<dir>`` keeps the two
screenshots (what docs/ui-*.png are made from)."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from glassworks.tracking import contract as C
from glassworks.tracking.logged_model import run_model_id
from tests.conftest import TINY, mlflow_server, run_cli

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("chromium") is None and shutil.which("chromium-browser") is None,
                                 reason="chromium is not installed (Debian: apt-get install chromium)")]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SMALL = [*TINY, "trainer.max_epochs=1", "data.source.n_train=200", "model=tiny", "explain.n_examples=2",
         "explain.methods=[rollout]", "explain.n_heatmaps=0", "robustness.enabled=false", "report.enabled=false"]
PRINTED_LINK = re.compile(r"then browse:\s+(http://127\.0\.0\.1:5000/\S+)")


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """A finished run (train + explain) and an ``mlflow server`` on its store, on a free port."""
    tmp = tmp_path_factory.mktemp("ui")
    done = run_cli("pipeline.run", *SMALL, cwd=tmp, env={"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
    assert done.returncode == 0, done.stderr[-3000:]
    uri = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    client = MlflowClient(uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    link = PRINTED_LINK.search(done.stdout)
    assert link, done.stdout[-2000:]

    with mlflow_server(uri, tmp, tmp / "server.log") as base:
        yield {"tmp": tmp, "client": client, "run": run, "base": base, "log": tmp / "server.log",
               "printed": link.group(1).replace("http://127.0.0.1:5000", base)}


def browse(url: str, profile: Path, screenshot: Path | None = None, height: int = 900) -> str:
    """The page's DOM once the app has fetched and rendered (or a screenshot of it, 1400 px wide)."""
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}",
             "--virtual-time-budget=15000", f"--window-size=1400,{height}"]
    action = [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    done = subprocess.run([*flags, *action, url], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def visible_text(dom: str) -> str:
    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", text)))


def keep_screenshot(shot: Path) -> None:
    folder = os.environ.get("GLASSWORKS_UI_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(folder) / shot.name)


def test_printed_link_opens_the_run_page_listing_its_logged_model(ui, tmp_path):
    run = ui["run"]
    run_id, experiment_id = run.info.run_id, run.info.experiment_id
    assert ui["printed"].endswith(f"/#/experiments/{experiment_id}/runs/{run_id}{C.UI_VIEW_QUERY}")
    experiment = ui["client"].get_experiment(experiment_id)
    assert experiment.tags[C.TAG_EXPERIMENT_KIND] == C.EXPERIMENT_KIND

    dom = browse(ui["printed"], tmp_path / "profile")
    text = visible_text(dom)
    model_id = run_model_id(ui["client"], run_id)
    assert model_id is not None
    # the Model training view's run page: its tabs, and the logged model linked to its own page
    assert "Model metrics" in text and "Artifacts" in text, text[:2000]
    assert f"#/experiments/{experiment_id}/models/{model_id}" in dom
    assert re.search(r"\bmodel Ready\b", text), text[:3000]
    # the model's metrics carry the test split as their dataset
    assert f"{run.data.tags[C.TAG_DATA_NAME]}-test" in text
    shot = tmp_path / "ui-run-page.png"
    browse(ui["printed"], tmp_path / "profile", screenshot=shot, height=1500)  # down to "Logged models"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    keep_screenshot(shot)


def test_experiment_models_tab_lists_the_logged_model(ui, tmp_path):
    run = ui["run"]
    url = f"{ui['base']}/#/experiments/{run.info.experiment_id}/models{C.UI_VIEW_QUERY}"
    text = visible_text(browse(url, tmp_path / "profile"))
    assert re.search(r"\bmodel Ready\b", text) and run.info.run_name in text, text[:3000]


def test_explanations_index_opens_from_the_artifact_view(ui, tmp_path):
    run_id, experiment_id = ui["run"].info.run_id, ui["run"].info.experiment_id
    url = f"{ui['base']}/#/experiments/{experiment_id}/runs/{run_id}/artifacts/{C.EXPLAIN_INDEX}{C.UI_VIEW_QUERY}"
    dom = browse(url, tmp_path / "profile")
    text = visible_text(dom)
    # the artifact tree (the model is not a run artifact: it is the LoggedModel), the file selected
    # and shown in the UI's HTML viewer
    assert C.EXPLAIN_INDEX in text and C.EXPLANATIONS_DIR in text, text[:3000]
    assert 'class="mlflow-html-iframe"' in dom
    # ... filled from the server with the logged page
    request = f"GET /get-artifact?path={urllib.parse.quote(C.EXPLAIN_INDEX, safe='')}&run_uuid={run_id} HTTP/1.1\" 200"
    assert request in ui["log"].read_text()
    served = urllib.request.urlopen(f"{ui['base']}/get-artifact?path={urllib.parse.quote(C.EXPLAIN_INDEX)}"
                                    f"&run_uuid={run_id}", timeout=30).read()
    logged = Path(ui["client"].download_artifacts(run_id, C.EXPLAIN_INDEX, str(tmp_path))).read_bytes()
    assert served == logged and b"Explanations" in served
    # the frame is built from the file alone: the page's figures travel inside it
    assert served.count(b'<img src="data:image/png;base64,') >= 2 and b'<img src="' + b'metrics' not in served
    shot = tmp_path / "ui-explanations.png"
    browse(url, tmp_path / "profile", screenshot=shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    keep_screenshot(shot)
