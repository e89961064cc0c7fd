"""A report of hostile data stays inert: payloads in texts, label names, the run name and tags are
escaped in the HTML and Markdown, and a real headless Chromium renders the page without running
or creating anything injected."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from omegaconf import open_dict

import pipeline.run
from glassworks.testing.html import parse_html
from tests.conftest import compose_config

pytestmark = pytest.mark.slow

TITLE_PAYLOAD = "<img src=x onerror=\"document.title='PWNED'\">"
LABEL_A = "</textarea><script>document.title='PWNED'</script>"
LABEL_B = "\"><img src=x onerror=alert(1)>"
TEXT_PAYLOADS = ("<script>alert(1)</script>", "\"><img src=x onerror=alert(1)>", "</textarea>", TITLE_PAYLOAD)
RUN_NAME = "../../" + TITLE_PAYLOAD + "/x"
SECTIONS = ["summary", "config", "environment", "data", "model", "training", "test", "explanations", "robustness",
            "timings", "reproduce"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Our own elements only: anything else in the page would have come from the data.
ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "h3", "p", "nav", "a", "main",
                "section", "div", "span", "dl", "dt", "dd", "table", "caption", "thead", "tbody", "tr", "th", "td",
                "figure", "img", "figcaption", "pre", "code", "details", "summary"}



def write_hostile_csv(path: Path) -> None:
    positive = ["good", "great", "fine", "lovely", "superb"]
    negative = ["bad", "awful", "dull", "poor", "boring"]
    rows = []
    for i in range(160):
        words, label = (positive, LABEL_A) if i % 2 == 0 else (negative, LABEL_B)
        payload = TEXT_PAYLOADS[i % len(TEXT_PAYLOADS)]
        rows.append({"text": f"the film was {words[i % 5]} {payload} and {words[(i + 2) % 5]} overall", "label": label})
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    data = tmp / "hostile.csv"
    write_hostile_csv(data)
    cfg = compose_config(tmp, [
        "data=files", f"data.source.train={data}", "data.batch_size=16", "data.tokenizer.min_frequency=1",
        "trainer=cpu", "trainer.max_epochs=1", "callbacks.rich_progress_bar=null", "logger.system_metrics=false",
        "explain.methods=[rollout]", "explain.n_examples=4", "explain.n_heatmaps=0",  # not in the report
        "robustness.stability_examples=1",
        "robustness.n_stability=1", "robustness.attack.max_edits=2",
    ], config_name="run", tiny=False)
    with open_dict(cfg):
        cfg.run_name = RUN_NAME
        cfg.tags["note"] = LABEL_A
    pipeline.run.main(cfg)
    (folder,) = list((tmp / "reports").iterdir())
    return {"tmp": tmp, "folder": folder, "html": folder / "report.html",
            "page": (folder / "report.html").read_text(), "md": (folder / "report.md").read_text()}


def test_report_folder_stays_inside_reports_dir(hostile):
    folder = hostile["folder"]
    assert folder.parent == hostile["tmp"] / "reports"
    assert ".." not in folder.name and "/" not in folder.name and "<" not in folder.name


def test_html_escapes_every_payload(hostile):
    page = hostile["page"]
    for raw in ("<script", "<img src=x", "</textarea>", "<textarea", "onerror=\"document"):
        assert raw not in page, raw
    parsed = parse_html(page)
    for tag, attrs in parsed.tags:
        assert tag in ALLOWED_TAGS, tag
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        if tag == "img":
            assert attrs["src"].startswith("data:image/png;base64,")
        if tag == "a":  # the report's own sections, or another page of the run's artifacts
            href = attrs["href"]
            assert href.startswith("#") or re.fullmatch(r"(\.\./)?[a-z_]+(/[a-z_0-9]+)*\.html", href), href
    assert parsed.title == f"Run report: {RUN_NAME}"
    text = "".join(parsed.text)
    # Shown as text, verbatim: label names in the class table, texts' tokens, the run name, the tag.
    for shown in (LABEL_A, LABEL_B, RUN_NAME):
        assert shown in text, shown
    assert "onerror" in text  # the token text of the payloads is displayed, not interpreted


def test_markdown_escapes_every_payload(hostile):
    # Fenced code (the config, the overrides) is shown verbatim by every CommonMark renderer, as
    # long as no line inside can close the fence; everything outside must be escaped.
    outside, fence = [], None
    for line in hostile["md"].splitlines():
        if fence is None and line.startswith("```"):
            fence = line[: len(line) - len(line.lstrip("`"))]
        elif fence is not None and line.strip() == fence:
            fence = None
        elif fence is not None:
            assert not line.lstrip().startswith(fence), line
        else:
            outside.append(line)
    assert fence is None, "unclosed code fence"
    text = "\n".join(outside)
    for raw in ("<script", "<img", "</textarea", "<textarea"):
        assert raw not in text, raw
    assert "&lt;/textarea&gt;&lt;script&gt;" in text


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)")
def test_chromium_renders_the_report_and_runs_nothing(hostile, tmp_path):
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,3000"]
    # Control: in this harness a script that runs does change the dumped title.
    control = tmp_path / "control.html"
    control.write_text("<!DOCTYPE html><html><head><title>before</title></head><body>"
                       "<script>document.title='RAN'</script></body></html>")
    ran = subprocess.run([*flags, "--dump-dom", control.as_uri()], capture_output=True, text=True, timeout=120)
    assert parse_html(ran.stdout).title == "RAN", ran.stderr[-2000:]

    url = hostile["html"].resolve().as_uri()
    dom = subprocess.run([*flags, "--virtual-time-budget=2000", "--dump-dom", url], capture_output=True,
                         text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = parse_html(dom.stdout)
    assert rendered.title == f"Run report: {RUN_NAME}", "the title changed: a script ran"
    assert rendered.title != "PWNED"
    tags = [tag for tag, _ in rendered.tags]
    assert set(tags) <= ALLOWED_TAGS, set(tags) - ALLOWED_TAGS
    assert [a.get("id") for t, a in rendered.tags if t == "section"] == SECTIONS
    images = [a for t, a in rendered.tags if t == "img"]
    assert len(images) >= 5 and all(a["src"].startswith("data:image/png;base64,") for a in images)
    assert LABEL_A in "".join(rendered.text)

    screenshot = tmp_path / "report.png"
    shot = subprocess.run([*flags, f"--screenshot={screenshot}", url], capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.stat().st_size > 50_000  # a rendered page, not a blank one
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
