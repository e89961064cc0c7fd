"""Every page type as a reader sees it, in a real headless Chromium at 1400 px: the run report,
the explanations index, an example page and the adversarial page of a classifier run; the report
and the explanation pages of an LM run (experiment=lm_recall); a sweep report.

Each page: no horizontal overflow, no figure shown below 80% of its saved width (``document.documentElement.scrollWidth <= innerWidth``,
measured by a script in a copy of the page whose Content-Security-Policy is lifted for the
measurement only), a screenshot that is not blank, every relative link lands on a file of the
run's artifacts, and every figure it shows was drawn in the one shared style (its
``glassworks:style`` PNG chunk: fonts >= 9 pt at the saved size, integer ticks on integer data).

``GLASSWORKS_PAGE_SHOTS=<folder>`` keeps small copies of the screenshots (the README's docs/pages/).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from mlflow import MlflowClient

from glassworks.render.png import style_of
from glassworks.render.style import MIN_FONT_PT
from glassworks.testing.html import PageParts, parse_html
from glassworks.tracking import contract as C
from tests.conftest import TINY, run_cli

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH = 1400
ENV = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
CLASSIFIER = [*TINY, "explain.methods=[shap,rollout,grad_attention]", "explain.n_examples=6", "explain.n_heatmaps=1",
              "explain.shap.max_evals=64", "robustness.stability_examples=1", "robustness.n_stability=1",
              "robustness.attack.max_edits=2", "robustness.curve_k=4"]
LM = ["experiment=lm_recall", "data.source.n_train=1500", "data.source.n_validation=60", "data.source.n_test=60",
      "data.batch_size=32", "trainer.max_epochs=1", "trainer=cpu", "callbacks.rich_progress_bar=null",
      "logger.system_metrics=false", "explain.n_examples=3", "explain.n_heatmaps=1", "explain.shap.max_evals=64",
      "robustness.curve_k=4"]
SWEEP = [*TINY, "trainer.max_epochs=1", "data.source.n_train=200", "explain.n_examples=4",
         "explain.methods=[rollout,input_x_gradient]", "explain.n_heatmaps=0", "robustness.enabled=false",
         "report.enabled=false", "model.n_layers=1,2"]

requires_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")

MEASURE = """<script>
window.addEventListener("load", () => {
  const d = document.documentElement;
  const wide = [...document.querySelectorAll("body *")]
    .filter(e => e.getBoundingClientRect().right > innerWidth + 0.5)
    .slice(0, 5).map(e => e.tagName.toLowerCase() + "." + e.className + " " + (e.textContent || "").slice(0, 40));
  const shrunk = [...document.images].filter(i => i.naturalWidth && i.clientWidth < 0.8 * i.naturalWidth)
    .map(i => (i.getAttribute("alt") || "").slice(0, 60) + " " + i.clientWidth + "/" + i.naturalWidth);
  document.title = "MEASURED " + JSON.stringify({scrollWidth: d.scrollWidth, innerWidth: innerWidth, wide: wide,
                                                 shrunk: shrunk});
});
</script>"""
CSP = re.compile(r'<meta http-equiv="Content-Security-Policy"[^>]*>')


def artifacts_dir(client: MlflowClient, run_id: str) -> Path:
    uri = client.get_run(run_id).info.artifact_uri
    return Path(unquote(urlparse(uri).path))


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}"]
    return subprocess.run([*flags, *args], capture_output=True, text=True, timeout=120)


def check_page(path: Path, root: Path, tmp: Path, shot_name: str) -> PageParts:
    """Overflow, screenshot, links and figures of the page at `path` (`root`: the run's artifacts)."""
    html = path.read_text(encoding="utf-8")
    page = parse_html(html)
    # 1. no horizontal overflow at 1400 px
    probe = path.with_name(path.stem + ".measure.html")
    probe.write_text(CSP.sub("", html).replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    try:
        dom = chromium(f"--window-size={WIDTH},1000", "--virtual-time-budget=3000", "--dump-dom", probe.as_uri(),
                       profile=tmp / "profile")
    finally:
        probe.unlink()
    title = parse_html(dom.stdout).title
    assert title.startswith("MEASURED "), (path.name, title, dom.stderr[-1500:])
    measured = json.loads(title.removeprefix("MEASURED "))
    assert measured["innerWidth"] == WIDTH, measured
    assert measured["scrollWidth"] <= measured["innerWidth"], (path.name, measured)
    # figures are shown near their saved size (>= 80%): 9 pt stays readable on the page
    assert not measured["shrunk"], (path.name, measured["shrunk"])
    # 2. a screenshot at 1400 px that shows a page
    shot = tmp / f"{shot_name}.png"
    done = chromium(f"--window-size={WIDTH},1000", f"--screenshot={shot}", path.as_uri(), profile=tmp / "profile")
    assert done.returncode == 0 and shot.stat().st_size > 20_000, (path.name, done.stderr[-1500:])
    keep_screenshot(shot, shot_name)
    # 3. relative links land on files of the run's artifacts (the report's own anchors aside)
    for href in page.links:
        if href.startswith("#"):
            continue
        assert "://" not in href and not href.startswith("/"), (path.name, href)
        target = (path.parent / href).resolve()
        assert target.is_file() and root.resolve() in target.parents, (path.name, href)
    # 4. every figure in the shared style
    for src in page.images:
        png = base64.b64decode(src.split(",", 1)[1]) if src.startswith("data:") else (path.parent / src).read_bytes()
        check_figure(png, f"{path.name}: {src[:60]}")
    return page


def check_figure(png: bytes, where: str) -> None:
    style = style_of(png)
    assert style is not None, f"{where}: not written by glassworks.render.png_bytes"
    assert style["min_font_pt"] >= MIN_FONT_PT and style["dpi"] >= 100, (where, style["min_font_pt"], style["dpi"])
    for ax in style["axes"]:
        for which in ("x", "y"):
            axis = ax[which]
            if axis["integer_data"] and axis["scale"] == "linear":
                bad = [t for t in axis["ticks"] if not re.fullmatch(r"[\u2212-]?\d+", t.replace(",", ""))]
                assert not bad, f"{where}: axes {ax['title']!r} {which} ({axis['label']}) has integer data, ticks {bad}"


def keep_screenshot(shot: Path, name: str) -> None:
    folder = os.environ.get("GLASSWORKS_PAGE_SHOTS")
    if not folder:
        return
    from PIL import Image

    Path(folder).mkdir(parents=True, exist_ok=True)
    with Image.open(shot) as image:
        small = image.convert("RGB").resize((WIDTH // 2, image.height // 2), Image.LANCZOS)
        small = small.quantize(colors=128, method=Image.Quantize.MEDIANCUT)
        buffer = io.BytesIO()
        small.save(buffer, format="PNG", optimize=True)
    (Path(folder) / f"{name}.png").write_bytes(buffer.getvalue())


def one_run(cwd: Path) -> tuple[MlflowClient, object]:
    client = MlflowClient(f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return client, runs


def finished_run(cwd: Path, overrides: list[str]) -> dict:
    """One ``pipeline.run`` with `overrides` in `cwd`: its client, run and artifact folder."""
    done = run_cli("pipeline.run", *overrides, cwd=cwd, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    client, runs = one_run(cwd)
    (run,) = runs
    return {"cwd": cwd, "client": client, "run": run, "root": artifacts_dir(client, run.info.run_id)}


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    return finished_run(tmp_path_factory.mktemp("classifier"), CLASSIFIER)


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return finished_run(tmp_path_factory.mktemp("lm"), LM)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("sweep")
    done = run_cli("pipeline.run", "-m", *SWEEP, cwd=cwd, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    client, runs = one_run(cwd)
    (parent,) = [r for r in runs if r.data.tags.get(C.TAG_SWEEP_ROLE) == "parent"]  # its report is the sweep's own
    return {"cwd": cwd, "client": client, "run": parent, "root": artifacts_dir(client, parent.info.run_id)}


@requires_chromium
def test_classifier_run_report(classifier, tmp_path):
    root = classifier["root"]
    page = check_page(root / C.REPORT_HTML, root, tmp_path, "run_report")
    text = "".join(page.text)
    assert str(classifier["cwd"]) not in (root / C.REPORT_HTML).read_text()  # no path of this machine
    assert "python -m pipeline.run " in text and "pipeline/run.py" not in text
    data = text[text.index("Data"):]
    assert '{"tags"' not in data and '{"uri"' not in data  # the dataset source as a location, not raw JSON
    assert C.link(C.EXPLAIN_INDEX, C.REPORT_DIR) in page.links and C.link(C.ADVERSARIAL_HTML, C.REPORT_DIR) in page.links
    assert "random_order (baseline)" in text and "random (baseline)" not in text


@requires_chromium
def test_classifier_explanation_pages(classifier, tmp_path):
    root = classifier["root"]
    index = check_page(root / C.EXPLAIN_INDEX, root, tmp_path, "explanations_index")
    text = "".join(index.text)
    assert "algorithm=partition" in text and "max_evals=64" in text  # which SHAP made the numbers
    assert "Rank agreement between methods" in text and "_vs_" not in text
    example_href = next(h for h in index.links if h.startswith("examples/"))
    example = check_page(root / C.EXPLANATIONS_DIR / example_href, root, tmp_path, "explanation_example")
    assert C.link(C.EXPLAIN_INDEX, C.EXPLAIN_EXAMPLES_DIR) in example.links
    check_page(root / C.ADVERSARIAL_HTML, root, tmp_path, "adversarial_examples")


@requires_chromium
def test_lm_pages(lm, tmp_path):
    root = lm["root"]
    check_page(root / C.REPORT_HTML, root, tmp_path, "lm_report")
    index = check_page(root / C.EXPLAIN_INDEX, root, tmp_path, "lm_explanations_index")
    assert "algorithm=partition" in "".join(index.text) and "max_evals=64" in "".join(index.text)
    pages = sorted((root / C.GENERATION_HEATMAPS_DIR).glob("*.html"))
    assert pages, "no LM explanation page"
    check_page(pages[0], root, tmp_path, "lm_generation_example")
    for png in (root / C.GENERATION_HEATMAPS_DIR).glob("*.png"):
        check_figure(png.read_bytes(), png.name)


@requires_chromium
def test_sweep_report(sweep, tmp_path):
    root = sweep["root"]
    page = check_page(root / C.REPORT_HTML, root, tmp_path, "sweep_report")
    assert str(sweep["cwd"]) not in (root / C.REPORT_HTML).read_text()
    assert len(page.images) >= 2
