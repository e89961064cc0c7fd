"""Security, end to end over one real run on hostile input: a data set whose texts, label names and
name are XSS payloads, a run name and a tag that are payloads (the run name also a path escape),
and secrets in the process environment. Then:

1. every HTML file the run produced (explanations, robustness, report, a sweep report) is inert:
   payloads escaped, no scripts or event handlers, no external URLs;
2. no secret from the environment reaches params, tags, artifacts or logs; credentials in a
   tracking URI are redacted wherever the config and command line are logged;
3. names from config or data never become a path outside its folder;
4. checkpoints and weights load with ``torch.load(weights_only=True)``, and every load site says so;
5. the MLflow UI command binds to 127.0.0.1.

Per-page unit tests of the renderers are in tests/unit (test_explain_render, test_robustness) and
tests/integration/test_report*.py; this file checks ALL pages of one real run.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
from hydra.utils import instantiate
from mlflow import MlflowClient

import pipeline.report
from glassworks.report.figures import plot_name as _plot_name
from glassworks.report.output import report_dir_name
from glassworks.tracking.names import safe_name
from glassworks.tracking.logged_model import run_model_id
from glassworks.tracking.tracker import MLflowTracker
from pipeline.stage import Job, open_run
from tests.conftest import ROOT, compose_config, run_cli

pytestmark = pytest.mark.slow

SCRIPT = "<script>alert(1)</script>"
IMG = "\"><img src=x onerror=alert(1)>"
TEXTAREA = "</textarea>"
LABEL_A = "</textarea><script>alert('a')</script>"
LABEL_B = "\"><img src=x onerror=alert('b')>"
DATA_NAME = "'><svg onload=alert(1)>"  # the data set's folder: the data name shown in pages
RUN_NAME = f"../../evil{SCRIPT}"
SWEEP_NAME = f"../../evil-sweep{IMG}"
SECRETS = {"MY_API_TOKEN": "tok-9f8e7d6c5b4a", "AWS_SECRET_ACCESS_KEY": "aws-Zx81Qw72Er63Ty54",
           "MLFLOW_TRACKING_PASSWORD": "mlflow-pw-ab12cd34", "HF_TOKEN": "hf_secretvalue0123"}
# A config value holding credentials (as a tracking URI would): redacted wherever it is logged.
CREDENTIALS_URI = "http://alice:pw-5ecret-77@tracking.example:5000"
RAW = ("<script", "<img src=x", "<svg", "<textarea", "</textarea", "<iframe", "javascript:")
FORBIDDEN_TAGS = {"script", "iframe", "object", "embed", "textarea", "form", "input", "link", "base", "svg"}


def write_hostile_jsonl(path: Path) -> None:
    positive, negative = ["good", "great", "fine", "lovely", "superb"], ["bad", "awful", "dull", "poor", "boring"]
    payloads = (SCRIPT, IMG, TEXTAREA, LABEL_A)
    with path.open("w", encoding="utf-8") as handle:
        for i in range(160):
            words, label = (positive, LABEL_A) if i % 2 == 0 else (negative, LABEL_B)
            text = f"the film was {words[i % 5]} {payloads[i % 4]} and {words[(i + 2) % 5]} overall"
            handle.write(json.dumps({"text": text, "label": label}) + "\n")


def quoted(value: str) -> str:
    """A Hydra override value taken literally."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """One real pipeline.run (CLI) on hostile input, from a folder two levels deep so that a
    ``../../`` escape would land inside ``root``; then a sweep report over it and a second,
    hand-made child whose parent, name and params are payloads."""
    root = tmp_path_factory.mktemp("security")
    work = root / "a" / "b" / "work"
    work.mkdir(parents=True)
    data_dir = root / "data" / DATA_NAME
    data_dir.mkdir(parents=True)
    write_hostile_jsonl(data_dir / "train.jsonl")
    out = run_cli(
        "pipeline.run", "data=files", f"data.source.train={quoted(str(data_dir / 'train.jsonl'))}",
        "data.batch_size=16", "data.tokenizer.min_frequency=1", "trainer=cpu", "trainer.max_epochs=1",
        "callbacks.rich_progress_bar=null", "logger.system_metrics=false",
        "explain.methods=[rollout,input_x_gradient]", "explain.n_examples=4", "explain.n_heatmaps=1",
        "robustness.stability_examples=1", "robustness.n_stability=1", "robustness.attack.max_edits=2",
        f"run_name={quoted(RUN_NAME)}", f"+tags.note={quoted(IMG)}", f"+tags.server={quoted(CREDENTIALS_URI)}",
        cwd=work, env={**SECRETS, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-4000:]
    client = MlflowClient(f"sqlite:///{work / 'mlruns' / 'mlflow.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])

    # A sweep over it: the parent's name and a second child's name and params are payloads.
    parent = client.create_run(run.info.experiment_id, run_name=SWEEP_NAME, tags={
        "glassworks.sweep_role": "parent", "glassworks.sweep.optimized_metric": "val/acc"}).info.run_id
    client.set_tag(run.info.run_id, "mlflow.parentRunId", parent)
    other = client.create_run(run.info.experiment_id, run_name=f"{SWEEP_NAME}-1-{LABEL_B}", tags={
        "mlflow.parentRunId": parent, "note": SCRIPT}).info.run_id
    client.log_param(other, "model.n_layers", IMG)
    client.log_param(other, "optimizer.lr", LABEL_A)
    client.log_metric(other, "val/acc", 0.5)
    client.set_terminated(other)
    client.set_terminated(parent)
    cfg = compose_config(work, [f"sweep_id={parent}"], config_name="report", tiny=False)
    tracker = instantiate(cfg.logger)
    tracker.run_id = parent
    pipeline.report.sweep_report(cfg, tracker, parent)

    artifacts = root / "artifacts"
    for run_id in (run.info.run_id, parent):
        client.download_artifacts(run_id, "", str(artifacts / run_id))
    return {"root": root, "work": work, "client": client, "run": client.get_run(run.info.run_id),
            "parent": parent, "artifacts": artifacts, "out": out}


def html_files(hostile) -> list[Path]:
    return sorted([*hostile["artifacts"].rglob("*.html"), *(hostile["work"] / "reports").rglob("*.html")])


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


# -- 1. XSS ----------------------------------------------------------------------------------


def test_every_html_page_of_the_run_is_inert(hostile):
    pages = html_files(hostile)
    names = {p.relative_to(hostile["root"]).as_posix().split("/", 2)[-1] for p in pages}
    # explanations (index + one page per example), robustness, the run's report and the sweep report
    assert {"explanations/index.html", "robustness/adversarial_examples.html", "report/report.html"} <= names
    assert sum("explanations/examples/" in n for n in names) == 4
    assert sum(p.name == "report.html" for p in pages) == 4  # 2 logged as report/, 2 under reports/
    shown = ""
    for page in pages:
        html = page.read_text(encoding="utf-8")
        for raw in RAW:
            assert raw not in html.lower(), (page, raw)
        # Nothing loads from elsewhere: no CSS url() but inline data, no URL in any attribute (below);
        # a URL may only appear as text (a config value such as the tag holding CREDENTIALS_URI).
        assert not re.search(r"url\(\s*['\"]?(?!data:)|@import", html, re.I), page
        assert "Content-Security-Policy" in html, page
        parsed = Tags()
        parsed.feed(html)
        for tag, attrs in parsed.tags:
            assert tag not in FORBIDDEN_TAGS, (page, tag)
            assert not any(name.startswith("on") for name in attrs), (page, tag, attrs)
            for key in ("src", "href", "action", "formaction", "srcset"):  # inline images or relative links
                value = (attrs.get(key) or "").strip().lower()
                assert not re.match(r"[a-z][a-z0-9+.-]*:|//", value) or value.startswith("data:image/"), (page, attrs)
        shown += "".join(parsed.text)
    # Not vacuous: the payloads reached the pages, as text.
    for payload in (SCRIPT, IMG, LABEL_A, LABEL_B, RUN_NAME, SWEEP_NAME, DATA_NAME):
        assert payload in shown, payload


# -- 2. secrets --------------------------------------------------------------------------------


def test_no_secret_from_the_environment_or_a_url_is_logged(hostile):
    run, client, work = hostile["run"], hostile["client"], hostile["work"]
    assert run.info.status == "FINISHED"
    assert run.data.tags["server"] == "http://***@tracking.example:5000"
    logged = json.dumps([run.data.params, run.data.tags, client.get_run(hostile["parent"]).data.tags])
    logged += hostile["out"].stdout + hostile["out"].stderr
    # What MLflow holds (its database, the artifacts) and the report built from it.
    tracked = [*hostile["artifacts"].rglob("*"), *(work / "reports").rglob("*"), work / "mlruns" / "mlflow.db"]
    # The local outputs (Hydra's job log and files) too, for the environment's secrets.
    local = [*work.rglob("*")]
    assert any(p.name == "config.yaml" for p in tracked) and any(p.suffix == ".log" for p in local)
    checks = [(secret, local) for secret in SECRETS.values()] + [("pw-5ecret-77", tracked)]
    for secret, paths in checks:
        assert secret not in logged, secret
        leaks = [p for p in paths if p.is_file() and secret.encode() in p.read_bytes()]
        assert not leaks, (secret, leaks)


def test_credentials_in_a_tracking_uri_are_redacted(tmp_path, monkeypatch):
    """``logger.tracking_uri=http://user:token@host``: params, tags, the command line and the
    logged config show ``http://***@host``. (The run itself goes to a local store here.)"""
    uri = "http://alice:s3cret-token@tracking.example:5000"
    override = f"logger.tracking_uri={uri}"
    cfg = compose_config(tmp_path, [override, f"+tags.server={uri}/x"])
    monkeypatch.setattr(sys, "argv", ["pipeline/train.py", override])
    tracker = MLflowTracker(store_dir=str(tmp_path / "mlruns"), system_metrics=False)
    run_id = open_run(Job(cfg=cfg, tracker=tracker))
    tracker.end("FINISHED")
    run = tracker.client.get_run(run_id)
    assert run.data.params["logger.tracking_uri"] == "http://***@tracking.example:5000"
    assert "http://***@tracking.example:5000" in run.data.tags["glassworks.command"]
    assert "http://***@tracking.example:5000" in run.data.tags["glassworks.overrides"]
    assert run.data.tags["server"] == "http://***@tracking.example:5000/x"
    texts = [Path(tracker.client.download_artifacts(run_id, f, str(tmp_path))).read_text()
             for f in ("config/config.yaml", "config/overrides.txt")]
    for text in [json.dumps(run.data.params), json.dumps(run.data.tags), *texts]:
        assert "s3cret-token" not in text and "alice" not in text


# -- 3. names that become paths ------------------------------------------------------------------


def test_names_never_become_paths_outside_their_folder(hostile):
    root, work = hostile["root"], hostile["work"]
    written = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    stray = [p for p in written if not p.startswith(("a/b/work/", "data/", "artifacts/"))]
    assert not stray, stray
    assert {p.split("/")[3] for p in written if p.startswith("a/b/work/")} <= {"mlruns", "outputs", "reports"}
    folders = sorted(p.name for p in (work / "reports").iterdir())
    assert len(folders) == 2 and all(name == safe_name(name) for name in folders), folders
    run = hostile["run"]
    assert report_dir_name(RUN_NAME, run.info.run_id) in folders
    assert folders[0].startswith("evil-")  # the readable part survives
    for artifact in hostile["artifacts"].rglob("*"):
        assert ".." not in artifact.relative_to(hostile["artifacts"]).parts


@pytest.mark.parametrize("name", ["../../evil", "..", "/etc/passwd", "a/../../b", "x\x00y", "..\\..\\win", ""])
def test_the_sanitiser_keeps_one_plain_path_component(name, tmp_path):
    for clean in (safe_name(name), _plot_name(name), report_dir_name(name, "0123456789")):
        assert clean and "/" not in clean and "\\" not in clean and "\x00" not in clean
        assert ".." not in clean and not clean.startswith(".")
        assert (tmp_path / clean).resolve().parent == tmp_path.resolve()


# -- 4. weights_only ---------------------------------------------------------------------------


def test_checkpoints_and_weights_load_weights_only(hostile):
    run_dir = hostile["artifacts"] / hostile["run"].info.run_id
    checkpoints = sorted(run_dir.glob("checkpoints/*.ckpt"))
    model = hostile["client"].get_logged_model(run_model_id(hostile["client"], hostile["run"].info.run_id))
    weights = sorted(Path(urlparse(model.artifact_location).path).glob("**/*.pt"))  # the LoggedModel's files
    assert weights, model.artifact_location
    assert checkpoints and weights
    for path in [*checkpoints, *weights]:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
        assert loaded, path
    checkpoint = torch.load(checkpoints[0], map_location="cpu", weights_only=True)
    assert checkpoint["state_dict"] and checkpoint["hyper_parameters"]["label_names"] == sorted([LABEL_A, LABEL_B])


def load_calls(tree: ast.AST) -> list[ast.Call]:
    """``torch.load(...)``, ``X.load_from_checkpoint(...)`` and any call given a ``ckpt_path``."""
    calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
        if (name == "load" and owner == "torch") or name == "load_from_checkpoint" \
                or any(k.arg == "ckpt_path" for k in node.keywords):
            calls.append(node)
    return calls


def test_every_checkpoint_load_in_the_code_is_weights_only():
    found = []
    for path in sorted([*(ROOT / "src").rglob("*.py"), *(ROOT / "pipeline").rglob("*.py")]):
        for call in load_calls(ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            found.append(where)
            flag = next((k.value for k in call.keywords if k.arg == "weights_only"), None)
            assert isinstance(flag, ast.Constant) and flag.value is True, f"{where} loads without weights_only=True"
    assert len(found) >= 2, found


# -- 5. the UI binds to localhost ----------------------------------------------------------------


def test_ui_commands_bind_to_localhost(tmp_path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = [line for line in readme.splitlines() if re.search(r"mlflow (ui|models serve)\b", line)]
    assert commands
    for line in commands:
        assert "--host 127.0.0.1" in line, line
    assert "--host 127.0.0.1" in MLflowTracker(store_dir=str(tmp_path / "mlruns")).ui_command
    # a store under a folder with a space: the printed command survives a copy into a shell
    spaced = MLflowTracker(store_dir=str(tmp_path / "my runs" / "mlruns")).ui_command
    assert shlex.split(spaced)[3] == f"sqlite:///{tmp_path / 'my runs' / 'mlruns' / 'mlflow.db'}"
