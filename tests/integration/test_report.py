"""The report stage on real tiny runs: built as pipeline.run's last stage, standalone, and for a sweep.

Every number the report shows must be MLflow's, and the HTML and Markdown renderings must agree.
"""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from mlflow import MlflowClient
from omegaconf import open_dict

import pipeline.doctor
import pipeline.explain
import pipeline.report
import pipeline.robustness
import pipeline.run
from glassworks.report.collect import ArtifactReader
from glassworks.report.document import fmt
from glassworks.report.run_report import format_seconds as seconds
from glassworks.tracking.derived import derived_source
from glassworks.tracking.store import ensure_experiment
from pipeline.stage import build_job
from tests.conftest import ROOT, compose_config, run_cli, run_snapshot

pytestmark = pytest.mark.slow

SECTIONS = ["summary", "config", "environment", "data", "model", "training", "test", "explanations", "robustness",
            "timings", "reproduce"]
# No attention heatmaps: the classifier report does not show them, and each takes over a second to draw.
RUN_OVERRIDES = [
    "seed=3", "explain.n_examples=4", "explain.methods=[shap,rollout]", "explain.shap.max_evals=64",
    "explain.n_heatmaps=0",
    "robustness.stability_examples=2", "robustness.n_stability=1", "robustness.attack.max_edits=2",
]



# --------------------------------------------------------------------------- parsing helpers
class _Tables(HTMLParser):
    """Every <table> as a list of rows of cell texts; every <section id>; every <img src>."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.sections: list[str] = []
        self.images: list[str] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "section":
            self.sections.append(attrs.get("id"))
        elif tag == "img":
            self.images.append(attrs.get("src", ""))

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[-1].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def html_tables(text: str) -> _Tables:
    parser = _Tables()
    parser.feed(text)
    return parser


def md_unescape(cell: str) -> str:
    cell = re.sub(r"^\*\*(.*)\*\*$", r"\1", cell.strip())
    return html.unescape(re.sub(r"\\(.)", r"\1", cell))


def md_tables(text: str) -> list[list[list[str]]]:
    tables, current = [], None
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [md_unescape(c) for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if all(re.fullmatch(r"-*:?-+:?", c.replace(" ", "")) for c in cells):
                continue  # the header rule
            if current is None:
                current = []
                tables.append(current)
            current.append(cells)
        else:
            current = None
    return tables


def find_table(tables: list[list[list[str]]], first_header: str, contains: str) -> list[list[str]]:
    for table in tables:
        if table and table[0] and table[0][0] == first_header and any(contains in " ".join(r) for r in table):
            return table
    raise AssertionError(f"no table starting with {first_header!r} containing {contains!r}")


def row(table: list[list[str]], key: str) -> dict[str, str]:
    header = table[0]
    for r in table[1:]:
        if r[0] == key:
            return dict(zip(header, r, strict=True))
    raise AssertionError(f"no row {key!r} in {[r[0] for r in table]}")


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def piped(tmp_path_factory):
    """pipeline.run's whole body on a tiny config: train, explain, robustness, then the report."""
    tmp = tmp_path_factory.mktemp("report")
    cfg = compose_config(tmp, RUN_OVERRIDES, config_name="run")
    pipeline.run.main(cfg)
    uri = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    client = MlflowClient(uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    folder = next((tmp / "reports").iterdir())
    return {"tmp": tmp, "uri": uri, "client": client, "run": run, "folder": folder,
            "html": (folder / "report.html").read_text(), "md": (folder / "report.md").read_text(),
            "json": json.loads((folder / "report.json").read_text())}


def test_report_is_the_runs_last_stage(piped):
    run, client = piped["run"], piped["client"]
    assert run.info.status == "FINISHED"
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert {"report/report.html", "report/report.md", "report/report.json", "report/images"} <= logged
    images = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "report/images")}
    assert {"learning_curves.png", "confusion_matrix.png", "global_importance.png", "explain_metrics.png",
            "curves_deletion.png", "flip_rate.png"} <= images
    assert piped["folder"].name == f"{run.info.run_name}-{run.info.run_id[:8]}"
    assert piped["folder"].parent == piped["tmp"] / "reports"


def test_every_section_is_there(piped):
    parsed = html_tables(piped["html"])
    assert parsed.sections == SECTIONS
    for title in ("What was run", "Where it ran", "Data", "Model", "Learning curves", "Test results", "Explanations",
                  "Robustness", "Timings", "Reproduce"):
        assert f"\n## {title}\n" in piped["md"], title
    # Self-contained: every image is an embedded PNG, nothing is fetched, nothing runs.
    assert parsed.images and all(src.startswith("data:image/png;base64,") for src in parsed.images)
    assert "<script" not in piped["html"] and "http://" not in piped["html"] and "https://" not in piped["html"]
    for image in re.findall(r"\]\((images/[^)]+)\)", piped["md"]):
        assert (piped["folder"] / image).is_file(), image


def test_numbers_are_mlflows(piped):
    run, client = piped["run"], piped["client"]
    metrics = run.data.metrics
    assert piped["json"]["metrics"] == metrics  # exactly what MLflow holds, nothing recomputed
    tables = html_tables(piped["html"]).tables
    final = find_table(tables, "metric", "test/acc")
    for key in ("test/acc", "test/f1", "test/loss", "val/acc"):
        assert row(final, key)["value"] == fmt(metrics[key]), key
    faith = find_table(tables, "method", "random_order (baseline)")
    for method in ("shap", "rollout"):
        cells = row(faith, method)
        assert cells["comprehensiveness ↑"] == fmt(metrics[f"explain/{method}/comprehensiveness"])
        assert cells["sufficiency ↓"] == fmt(metrics[f"explain/{method}/sufficiency"])
        assert cells["rationale AUPRC ↑"] == fmt(metrics[f"explain/{method}/rationale_auprc"])
    assert row(faith, "random_order (baseline)")["AOPC ↑"] == fmt(metrics["explain/random_order/aopc"])
    robust = find_table(tables, "method", "deletion AUC")
    assert row(robust, "shap")["deletion AUC ↓"] == fmt(metrics["robustness/shap/deletion_auc"])
    assert row(robust, "shap")["flip rate @1 ↑"] == fmt(metrics["robustness/shap/flip_rate_at_1"])
    timings = find_table(tables, "stage", "train")
    for stage in ("train", "explain", "robustness"):
        assert row(timings, stage)["time"] == seconds(metrics[f"time/{stage}_s"])
    epochs = find_table(tables, "epoch", "0")
    history = client.get_metric_history(run.info.run_id, "val/acc")
    assert [r[epochs[0].index("val/acc")] for r in epochs[1:]] == [fmt(m.value) for m in sorted(history, key=lambda m: m.step)]
    assert piped["json"]["history_lengths"]["train/loss"] == len(client.get_metric_history(run.info.run_id, "train/loss"))
    # The confusion matrix comes from the logged model on the rebuilt test split: it must
    # agree with the test/acc Lightning logged during training, a balanced accuracy (torchmetrics'
    # macro average: the mean of the recalls; until 2026-12-03 the report compared it with the
    # share of right answers, and flagged real text of unequal classes as a disagreement).
    matrix = piped["json"]["confusion_matrix"]
    counts = np.array(matrix["counts"])
    assert counts.sum() == 100
    assert matrix["accuracy"] == pytest.approx(np.trace(counts) / 100)
    assert matrix["balanced_accuracy"] == pytest.approx(np.mean(np.diag(counts) / counts.sum(axis=1)))
    assert matrix["balanced_accuracy"] == pytest.approx(metrics["test/acc"], abs=0.011)
    assert matrix["labels"] == ["negative", "positive"]


def test_markdown_and_html_agree(piped):
    from_html = [t for t in html_tables(piped["html"]).tables]
    # Example attributions are coloured tokens in HTML and a top-tokens table in Markdown.
    from_md = [t for t in md_tables(piped["md"]) if t[0][:2] != ["method", "top tokens towards the class (score)"]]
    # The headline is cards in HTML and a table in Markdown; every other table is in both, cell for cell.
    assert len(from_md) == len(from_html) + 1
    assert from_md[1:] == from_html
    for card in re.findall(r"<div class=\"value\">([^<]*)</div>", piped["html"]):
        assert html.unescape(card) in from_md[0][1]


def test_config_differences_from_defaults(piped):
    changes = {c["key"]: c for c in piped["json"]["config_changes"]}
    assert changes["data.source.n_train"]["value"] == "400" and changes["data.source.n_train"]["default"] != "400"
    assert changes["explain.methods"]["value"] == '["shap", "rollout"]'
    assert changes["seed"]["follows"] is None
    # data.seed changed only because seed did.
    assert changes["data.seed"]["follows"] == "${seed}" and changes["data.seed"]["value"] == "3"
    assert changes["callbacks.rich_progress_bar"]["value"] == "null"
    assert not any(k.startswith("paths.") or k == "trainer.default_root_dir" for k in changes)
    assert "optimizer.lr" not in changes
    assert "python -m pipeline.reproduce run_id=" + piped["run"].info.run_id in piped["md"]
    assert "python -m pipeline.run " in piped["json"]["reproduce"] and "explain.shap.max_evals=64" in piped["json"]["reproduce"]


def test_explanation_examples_show_every_method(piped):
    page = piped["html"]
    examples = re.findall(r"<div class=\"example\">(.*?)</div></div></div>", page, flags=re.S)
    assert len(examples) == 3
    for example in examples:
        methods = re.findall(r"<div class=\"method\">([^<]*)</div>", example)
        assert methods == ["shap", "rollout", "random_order"]
        assert example.count("class=\"tok") >= 3 * 4
    assert "#### Test example" in piped["md"]


def test_standalone_report_leaves_the_run_finished(piped):
    run_id = piped["run"].info.run_id
    cfg = compose_config(piped["tmp"], [f"run_id={run_id}", "report.n_examples=1", "report.confusion_matrix=false"],
                         config_name="report", tiny=False)
    pipeline.report.main(cfg)
    run = piped["client"].get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.end_time == piped["run"].info.end_time
    page = (piped["folder"] / "report.html").read_text()
    assert page.count("<div class=\"example\">") == 1
    assert "No confusion matrix: disabled" in page


# --------------------------------------------------------------------------- derived runs
def _stage_cfg(piped, name, *overrides):
    return compose_config(piped["tmp"], [*overrides, "logger.system_metrics=false"], config_name=name, tiny=False)


def _derived(piped, parent_id):
    return piped["client"].search_runs([piped["run"].info.experiment_id],
                                       filter_string=f"tags.`glassworks.derived_from` = '{parent_id}'")


def _report_of(piped, run_id):
    pipeline.report.main(_stage_cfg(piped, "report", f"run_id={run_id}", "report.n_examples=1",
                                    "report.confusion_matrix=false"))
    folder = next(f for f in (piped["tmp"] / "reports").iterdir() if f.name.endswith(run_id[:8]))
    return folder, json.loads((folder / "report.json").read_text()), (folder / "report.html").read_text()


def test_derived_runs_nest_and_each_report_shows_its_own_results(piped):
    client, parent = piped["client"], piped["run"]
    parent_id = parent.info.run_id
    before = run_snapshot(client, parent_id)
    pipeline.explain.main(_stage_cfg(piped, "explain", f"run_id={parent_id}", "explain.methods=[rollout]",
                                     "explain.n_examples=4", "explain.n_heatmaps=0"))
    (explained,) = _derived(piped, parent_id)
    # Robustness of the derived explain run probes ITS explanations (rollout only), with the parent's model.
    pipeline.robustness.main(_stage_cfg(piped, "robustness", f"run_id={explained.info.run_id}",
                                        "explain.methods=[rollout]", "robustness.stability_examples=1",
                                        "robustness.n_stability=1", "robustness.attack.max_edits=2"))
    (probed,) = _derived(piped, explained.info.run_id)
    assert run_snapshot(client, parent_id) == before
    tags = probed.data.tags
    assert tags["mlflow.parentRunId"] == explained.info.run_id and tags["glassworks.derived_root"] == parent_id
    assert tags["glassworks.derived_stage"] == "robustness" and probed.info.status == "FINISHED"
    methods = {k.split("/")[1] for k in probed.data.metrics if k.startswith("robustness/") and k.count("/") == 2}
    assert methods == {"rollout", "random_order"}  # its explanations: rollout (the parent had shap too), and the one baseline
    assert "time/robustness_s" in probed.data.metrics
    # its params: the settings that differ from the parent's (seed=3 and max_evals=64 made the parent's)
    assert explained.data.params == {"explain.methods": "['rollout']", "explain.seed": "0", "explain.shap.seed": "0",
                                     "explain.shap.max_evals": "500"}
    # The probe explained its perturbed copies as the explain run had made the originals (its
    # max_evals 500, not this command's defaults): no explain setting differs from its parent's.
    assert not [k for k in probed.data.params if k.startswith("explain.")], probed.data.params
    cfg = _stage_cfg(piped, "robustness", f"run_id={explained.info.run_id}")
    tracker = build_job(cfg, with_data=False).tracker
    source = derived_source(tracker, explained.info.run_id)
    alike = pipeline.robustness.explained_alike(cfg, tracker, source, [])
    assert alike.explain.shap.max_evals == 500 and list(alike.explain.methods) == ["rollout"]
    cfg.explain.shap.max_evals = 32  # given on the command line: explain.shap.max_evals=32
    alike = pipeline.robustness.explained_alike(cfg, tracker, source, ["explain.shap.max_evals=32"])
    assert alike.explain.shap.max_evals == 32 and list(alike.explain.methods) == ["rollout"]

    # The parent's report: its own results, and the two derived runs listed.
    _, summary, page = _report_of(piped, parent_id)
    assert run_snapshot(client, parent_id) == before  # the report/ it holds is kept: written to disk only
    assert summary["metrics"]["explain/shap/comprehensiveness"] == parent.data.metrics["explain/shap/comprehensiveness"]
    assert {(r["stage"], r["run_id"]) for r in summary["derived_runs"]} == {
        ("explain", explained.info.run_id), ("robustness", probed.info.run_id)}
    tables = html_tables(page)
    assert "derived" in tables.sections
    listed = find_table(tables.tables, "run", "explain.methods=['rollout'], explain.seed=0")
    assert any(explained.info.run_id in " ".join(r) and "rollout" in " ".join(r) for r in listed[1:])
    total = sum(v for k, v in parent.data.metrics.items() if k.startswith("time/"))
    assert "Total of the stage timings" in page and "wall time" not in page.lower()
    assert summary["metrics"]["time/train_s"] <= total

    # The derived explain run's report: its explanations with the parent's training context, and
    # no robustness results (the parent's were made from other explanations).
    folder, summary, page = _report_of(piped, explained.info.run_id)
    metrics = summary["metrics"]
    assert summary["run_id"] == explained.info.run_id and summary["derived_from"] == parent_id
    assert metrics["test/acc"] == parent.data.metrics["test/acc"]
    assert metrics["explain/rollout/comprehensiveness"] == explained.data.metrics["explain/rollout/comprehensiveness"]
    assert "explain/shap/comprehensiveness" not in metrics and not any(k.startswith("robustness/") for k in metrics)
    assert summary["history_lengths"]["val/acc"] == len(client.get_metric_history(parent_id, "val/acc"))
    assert "training" in html_tables(page).sections
    assert f"python -m pipeline.explain run_id={parent_id}" in (folder / "report.md").read_text()
    assert "report/report.html" in {a.path for a in client.list_artifacts(explained.info.run_id, "report")}
    # ... and the robustness run's: its probe, of the explain run's explanations.
    _, summary, _ = _report_of(piped, probed.info.run_id)
    assert summary["metrics"]["robustness/rollout/deletion_auc"] == probed.data.metrics["robustness/rollout/deletion_auc"]
    assert summary["metrics"]["explain/rollout/aopc"] == explained.data.metrics["explain/rollout/aopc"]


def test_a_killed_derived_run_is_killed_not_resumed_and_the_parent_untouched(piped, capsys):
    client, parent_id = piped["client"], piped["run"].info.run_id
    before = run_snapshot(client, parent_id)
    already = {r.info.run_id for r in _derived(piped, parent_id)}
    # SIGKILL as the derived run starts explaining: nothing is left to end it.
    out = run_cli("pipeline.explain", f"run_id={parent_id}", "explain.methods=[rollout]", "explain.n_examples=2",
                  "logger.system_metrics=false", cwd=piped["tmp"],
                  env={"GLASSWORKS_FAULT": "explain:1", "PYTHONPATH": str(ROOT / "tests" / "faults")})
    assert out.returncode == -9, out.stderr[-3000:]
    (dead,) = [r for r in _derived(piped, parent_id) if r.info.run_id not in already]
    assert dead.info.status == "RUNNING"
    assert pipeline.doctor.main(["--store-dir", str(piped["tmp"] / "mlruns"), "--stale-minutes", "0"]) == 0
    printed = capsys.readouterr().out
    assert f"marked KILLED: {dead.info.run_id}" in printed
    assert (f"make it again with: python -m pipeline.explain run_id={parent_id} explain.methods=[rollout] "
            "explain.n_examples=2") in printed
    assert client.get_run(dead.info.run_id).info.status == "KILLED"
    assert run_snapshot(client, parent_id) == before
    # resume= does not continue it into the parent; it says how to make it again.
    with pytest.raises(SystemExit) as exit_info:
        pipeline.run.main(compose_config(piped["tmp"], [f"resume={dead.info.run_id}"], config_name="run"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"is a derived explain run (KILLED) of run {parent_id}" in err and "python -m pipeline.explain" in err
    with pytest.raises(SystemExit):
        pipeline.explain.main(_stage_cfg(piped, "explain", f"run_id={dead.info.run_id}"))
    assert "it is a derived run, make it again with" in capsys.readouterr().err
    assert run_snapshot(client, parent_id) == before


def test_needs_exactly_one_id(tmp_path, capsys):
    cfg = compose_config(tmp_path, [], config_name="report", tiny=False)
    with pytest.raises(SystemExit) as exit_info:
        pipeline.report.main(cfg)
    assert exit_info.value.code == 2
    assert "exactly one of run_id=" in capsys.readouterr().err


# --------------------------------------------------------------------------- sweep
def test_sweep_report_from_two_real_children(tmp_path):
    store = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    client = MlflowClient(store)
    experiment = ensure_experiment(client, "glassworks", tmp_path / "mlruns")
    parent = client.create_run(experiment, run_name="sweep-lr", tags={
        "glassworks.sweep.optimized_metric": "val/acc", "glassworks.sweep.mode": "max"}).info.run_id
    for job, lr in enumerate(("0.003", "0.0003")):
        # Two jobs of one sweep: one store, one output folder each (as Hydra's multirun does).
        cfg = compose_config(tmp_path, ["explain.methods=[rollout]", "explain.n_examples=4", "explain.n_heatmaps=0",
                                        "robustness.enabled=false",
                                        "report.enabled=false", "trainer.max_epochs=1", f"optimizer.lr={lr}",
                                        f"paths.output_dir={tmp_path / 'multirun' / str(job)}"], config_name="run")
        with open_dict(cfg):
            cfg.tags["mlflow.parentRunId"] = parent
        pipeline.run.main(cfg)
    # A running sweep's report shows the jobs so far, on disk only: logged, it would be the one kept.
    running = run_cli("pipeline.report", f"sweep_id={parent}", cwd=tmp_path)
    assert running.returncode == 0, running.stderr[-3000:]
    assert f"not logged: sweep {parent} is still RUNNING; report it again once it ends" in running.stdout
    assert client.list_artifacts(parent, "report") == []
    client.set_terminated(parent)

    out = run_cli("pipeline.report", f"sweep_id={parent}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    folder = next((tmp_path / "reports").glob("sweep-lr-*"))
    page = (folder / "report.html").read_text()
    summary = json.loads((folder / "report.json").read_text())
    children = client.search_runs([experiment], filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    assert len(children) == 2 and len(summary["children"]) == 2
    assert summary["swept_params"] == ["optimizer.lr"]
    # The best child has the highest val/acc; a tie goes to the child that started first.
    ordered = sorted(children, key=lambda r: (-r.data.metrics["val/acc"], r.info.start_time))
    best = ordered[0]
    assert summary["best_run_id"] == best.info.run_id
    assert summary["best_params"] == {"optimizer.lr": best.data.params["optimizer.lr"]}
    parsed = html_tables(page)
    assert parsed.sections == ["summary", "children", "best", "parameters", "accuracy-vs-explanations"]
    table = find_table(parsed.tables, "run", "optimizer.lr")
    assert sorted(r[table[0].index("optimizer.lr")] for r in table[1:]) == ["0.0003", "0.003"]
    for r in table[1:]:
        child = next(c for c in children if c.info.run_id.startswith(r[1]))
        assert r[table[0].index("val/acc")] == fmt(child.data.metrics["val/acc"])
    quality = next(t for t in parsed.tables if t[0][0] == "run" and "rollout" in t[0])  # comprehensiveness per method
    for r in quality[1:]:
        child = next(c for c in children if c.info.run_id.startswith(r[1]))
        assert r[quality[0].index("rollout")] == fmt(child.data.metrics["explain/rollout/comprehensiveness"])
    assert {"metric_vs_params.png", "accuracy_vs_explanations.png"} <= {p.name for p in (folder / "images").iterdir()}
    assert "report/report.html" in {a.path for a in client.list_artifacts(parent, "report")}

    # The finished sweep keeps the report it holds: a second report is written to disk only.
    logged = Path(urlparse(client.get_run(parent).info.artifact_uri).path) / "report" / "report.html"
    recorded = logged.stat().st_mtime_ns
    again = run_cli("pipeline.report", f"sweep_id={parent}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"not logged: run {parent} keeps the report/ it holds" in again.stdout
    assert logged.stat().st_mtime_ns == recorded
    assert f"python -m pipeline.reproduce run_id={best.info.run_id}" in (folder / "report.md").read_text()


# --------------------------------------------------------------------------- pure helpers (instant)
def test_report_folder_names_are_plain():
    from glassworks.report.output import report_dir_name
    from glassworks.tracking.names import safe_name

    assert safe_name("../../etc/passwd") == "etc-passwd"
    assert safe_name("..") == "unnamed" and safe_name("") == "unnamed" and safe_name("/") == "unnamed"
    assert safe_name(".hidden/../x") == "hidden-.-x" and safe_name("a/b\\c") == "a-b-c" and safe_name("...") == "unnamed"
    assert safe_name("ok.name-1_2") == "ok.name-1_2" and len(safe_name("x" * 200)) == 80
    assert report_dir_name("run <b>1</b>", "0123456789abcdef") == "run-b-1-b-01234567"


def test_metric_comparison_rules():
    from glassworks.report.compare import compare_metrics

    result = compare_metrics({"a": 1.0, "b": float("nan"), "c": 2.0, "time/x_s": 1.0, "shap/seconds_per_example": 3.0,
                              "explain/shap/seconds_per_step": 0.1, "train/tokens_per_sec": 9.0, "r/x": 1.0},
                             {"a": 1.0 + 5e-7, "b": float("nan"), "time/x_s": 9.0, "shap/seconds_per_example": 1.0,
                              "explain/shap/seconds_per_step": 0.2, "train/tokens_per_sec": 7.0, "r/x": 2.0},
                             exclude=["r/*"])
    rows = {r.key: r for r in result.rows}
    assert rows["a"].ok and rows["a"].status == "close"
    assert rows["b"].ok and not rows["c"].ok and rows["c"].status == "missing in reproduction"
    assert result.excluded == ["explain/shap/seconds_per_step", "r/x", "shap/seconds_per_example", "time/x_s",
                               "train/tokens_per_sec"] and not result.ok
    assert compare_metrics({"a": 1.0}, {"a": 1.1}, rtol=0.2, atol=0.0).ok
    assert not compare_metrics({"a": 1.0}, {"a": 1.1}).ok


def test_the_artifact_reader_reads_a_local_store_in_place(tmp_path):
    """On a store whose artifacts are on this disk the report reads them where they are (each
    MLflow list/download call loads the run again, ~30 ms on sqlite). Behind a server that proxies
    them it downloads: test_optuna_search_through_an_mlflow_server."""
    local = MlflowClient(f"sqlite:///{tmp_path / 'local.db'}")
    experiment = local.create_experiment("local", artifact_location=(tmp_path / "local-art").as_uri())
    run_id = local.create_run(experiment).info.run_id
    local.log_text(run_id, "in place", "folder/note.txt")
    reader = ArtifactReader(local, run_id, routes={"hidden": None})
    stored = tmp_path / "local-art" / run_id / "artifacts" / "folder" / "note.txt"
    assert reader.local("folder/note.txt") == stored and reader.text("folder/note.txt") == "in place"
    assert reader.exists("folder") and not reader.exists("folder/other.txt") and reader.local("nothing") is None
    assert not reader.exists("hidden/x.txt")  # a route to no run reads as absent
    reader.close()
    assert stored.read_text() == "in place"  # close() removes the scratch folder, never the store
