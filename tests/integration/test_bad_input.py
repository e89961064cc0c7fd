"""Every rejected input of the README table "Rejected inputs": one case per row.

Each must exit non-zero with one message naming the key, file, row or run, print no traceback
(unless debug=traceback), and leave the store as it was: no new run, no run RUNNING or FAILED
because of the bad input. Most rows run the stage's ``main`` in-process (the same code as the
command, without ~10 s of startup); a few run the real command line.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow import MlflowClient

import pipeline.explain
import pipeline.report
import pipeline.reproduce
import pipeline.robustness
import pipeline.run
import pipeline.train
from glassworks.report.run_report import _data_section
from glassworks.tracking.store import ensure_experiment
from pipeline.stage import build_job
from tests.conftest import compose_config, run_cli

pytestmark = pytest.mark.slow

STAGES = {"train": pipeline.train, "run": pipeline.run, "explain": pipeline.explain,
          "report": pipeline.report, "robustness": pipeline.robustness, "reproduce": pipeline.reproduce}

ROWS = "".join(f"example text number {i},{'pos' if i % 2 else 'neg'}\n" for i in range(40))
FILES: dict[str, str | bytes] = {
    "train.csv": "text,label\n" + ROWS,
    "bad_utf8.csv": b"text,label\nfine text,pos\nbad \xff byte,neg\n",
    "bad.jsonl": '{"text": "fine", "label": "pos"}\n{"text": "broken", label}\n',
    "empty_file.csv": "",
    "notes.txt": "text,label\n",
    "no_label.csv": "text,sentiment\nfine,pos\nfine too,neg\n",
    "no_text.csv": "review,label\nfine,pos\nfine too,neg\n",
    "blank_text.csv": "text,label\nfine,pos\n   ,neg\n",
    "neutral.csv": "text,label\nfine,pos\nso so,neutral\n",
    "one_class.csv": "text,label\n" + "".join(f"positive text {i},pos\n" for i in range(10)),
    "header_only.csv": "text,label\n",
    "long.csv": "text,label\n" + "".join(f"{'word ' * 60}{i},{'pos' if i % 2 else 'neg'}\n" for i in range(40)),
    "dup_val.csv": "text,label\n" + "".join(f"Example  text number {i},{'pos' if i % 2 else 'neg'}\n" for i in range(4)),
}


@pytest.fixture
def files(tmp_path: Path) -> Path:
    for name, content in FILES.items():
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return tmp_path


def store_runs(root: Path) -> dict[str, str]:
    """run id -> status of every run in ``root``'s store (none when the store was never made)."""
    db = root / "mlruns" / "mlflow.db"
    if not db.exists():
        return {}
    client = MlflowClient(f"sqlite:///{db}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return {r.info.run_id: r.info.status for r in client.search_runs(experiments)}


def error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def rejected(stage: str, args: list[str], root: Path, capsys) -> str:
    """Run ``stage``'s main in-process; it must exit 2 with one message and no traceback."""
    cfg = compose_config(root, args, stage, tiny=stage in ("train", "run"))
    with pytest.raises(SystemExit) as exit_info:
        STAGES[stage].main(cfg)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return error_line(err)


# id (the README table's test column), stage, overrides ({tmp} = the test's folder), the message's
# fragments that must appear (the key, file, row or value it names).
BEFORE_ANY_RUN = [
    ("unknown-key", "train", ["+model.colour=blue"], ["unknown config key model.colour"]),
    ("wrong-type", "train", ["model.d_model=abc"], ["model.d_model", "expected int, got 'abc'"]),
    ("wrong-type-seed", "train", ["seed=abc"], ["seed", "expected int, got 'abc'"]),
    ("wrong-type-trainer", "train", ["trainer.max_epochs=abc"], ["trainer.max_epochs", "expected int"]),
    ("out-of-range", "train", ["model.dropout=1.5"], ["model.dropout", "1.5"]),
    ("out-of-range-data", "train", ["data.batch_size=0"], ["data.batch_size", "got 0"]),
    ("out-of-range-optimizer", "train", ["optimizer.lr=-1"], ["optimizer.lr", "-1"]),
    ("out-of-range-callback", "train", ["callbacks.resume_checkpoint.every_n_train_steps=0"],
     ["callbacks.resume_checkpoint.every_n_train_steps", "got 0"]),
    ("inconsistent-heads", "train", ["model.d_model=30"], ["model.d_model", "divisible by n_heads (4)"]),
    ("inconsistent-length", "train", ["data.max_length=1000"], ["data.max_length", "model.max_positions=256"]),
    ("unknown-explain-method", "run", ["explain.methods=[shap,lime]"], ["explain.methods", "['lime']"]),
    ("bad-explain-budget", "run", ["explain.shap.max_evals=1"], ["explain.shap", "max_evals must be >= 3"]),
    ("bad-token-cap", "run", ["explain.shap.max_batch_tokens=foo"],
     ["explain.shap.max_batch_tokens", "must be auto, null or a positive number of tokens, got 'foo'"]),
    ("bad-attack-budget", "run", ["robustness.attack.max_edits=0"], ["robustness.attack", "max_edits"]),
    ("bad-attack-concurrency", "run", ["robustness.attack.concurrent_examples=0"],
     ["robustness.attack", "concurrent_examples must be >= 1, got 0"]),
    ("no-examples", "run", ["explain.n_examples=0"], ["invalid config explain.n_examples: must be >= 1, got 0"]),
    ("negative-heatmaps", "run", ["explain.n_heatmaps=-1"], ["invalid config explain.n_heatmaps: must be >= 0"]),
    ("bad-robustness-value", "run", ["robustness.curve_k=0"], ["invalid config robustness.curve_k: must be >= 1, got 0"]),
    ("bad-flow-limit", "run", ["explain.flow.max_tokens=1"], ["explain.flow", "max_tokens must be >= 2 or null"]),
    ("unknown-trainer-key", "train", ["+trainer.max_epoch=2"],
     ["unknown config key trainer.max_epoch; did you mean max_epochs?"]),
    ("out-of-range-trainer", "train", ["trainer.max_epochs=-5"],
     ["invalid config trainer.max_epochs: `max_epochs` must be a non-negative integer or -1. You passed in -5."]),
    ("out-of-range-trainer-fraction", "train", ["+trainer.val_check_interval=-0.5"],
     ["invalid config trainer.val_check_interval", "it has to be in [0.0, 1.0] or an int"]),
    ("missing-value", "train", ["data=files"], ["missing value for data.source.train"]),
    ("missing-run-id", "explain", [], ["missing value for run_id"]),
    ("run-logger-none", "run", ["logger=none"], ["logger=none: the explain stage reads the model from MLflow"]),
    ("missing-file", "train", ["data=files", "data.source.train={tmp}/nope.csv"],
     ["{tmp}/nope.csv (train)", "file not found"]),
    ("directory", "train", ["data=files", "data.source.train={tmp}"], ["(train)", "expected a file"]),
    ("unknown-format", "train", ["data=files", "data.source.train={tmp}/notes.txt"],
     ["notes.txt (train)", "'.txt'", "give data.source.format=csv|jsonl|parquet"]),
    ("empty-file", "train", ["data=files", "data.source.train={tmp}/empty_file.csv"],
     ["empty_file.csv (train)", "file is empty"]),
    ("undecodable", "train", ["data=files", "data.source.train={tmp}/bad_utf8.csv"],
     ["bad_utf8.csv (train), row 2", "not valid UTF-8", "line 3", "data.source.encoding=cp1252"]),
    ("invalid-json", "train", ["data=files", "data.source.train={tmp}/bad.jsonl"],
     ["bad.jsonl (train), row 2", "invalid JSON on line 2"]),
    ("missing-label-column", "train", ["data=files", "data.source.train={tmp}/no_label.csv"],
     ["no_label.csv, column 'label'", "available columns: 'text', 'sentiment'; give data.source.label_column=sentiment"]),
    ("missing-text-column", "train", ["data=files", "data.source.train={tmp}/no_text.csv"],
     ["no_text.csv, column 'text'", "available columns: 'review', 'label'; give data.source.text_column=review"]),
    ("empty-text", "train", ["data=files", "data.source.train={tmp}/blank_text.csv"],
     ["blank_text.csv, row 2, column 'text'", "empty or whitespace-only"]),
    ("label-outside-set", "train", ["data=files", "data.source.train={tmp}/train.csv",
                                    "data.source.validation={tmp}/neutral.csv", "data.source.label_names=[neg,pos]"],
     ["neutral.csv, row 2, column 'label'", "'neutral' is not in the label set ['neg', 'pos']"]),
    ("one-class", "train", ["data=files", "data.source.train={tmp}/train.csv",
                            "data.source.test={tmp}/one_class.csv"],
     ["one_class.csv, column 'label'", "test split has a single class ('pos', 10 rows)"]),
    ("empty-split", "train", ["data=files", "data.source.train={tmp}/train.csv",
                              "data.source.validation={tmp}/header_only.csv"],
     ["header_only.csv", "validation split is empty"]),
    ("unreachable-store", "train", ["logger.tracking_uri=http://127.0.0.1:9"],
     ["logger.tracking_uri", "http://127.0.0.1:9 is not reachable: Connection refused"]),
]


@pytest.mark.parametrize(("stage", "args", "expected"), [pytest.param(*case[1:], id=case[0]) for case in BEFORE_ANY_RUN])
def test_rejected_before_any_run(files, capsys, stage, args, expected):
    message = rejected(stage, [a.format(tmp=files) for a in args], files, capsys)
    for fragment in expected:
        assert fragment.format(tmp=files) in message
    assert store_runs(files) == {}


# ------------------------------------------------------------------ stages that work on a run id
@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, str]:
    """One store (a new sqlite store costs seconds) holding a run in each state: status -> run id,
    "root" -> the folder it lives in. Every case checks it leaves the store as it found it."""
    root = tmp_path_factory.mktemp("store")
    client = MlflowClient(f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    experiment = ensure_experiment(client, "glassworks", root / "mlruns")
    ids = {"root": str(root)}
    for status in ("RUNNING", "FAILED", "KILLED", "FINISHED"):
        # The killed one was started by pipeline.run: its message says how to resume it.
        tags = {"glassworks.task": "run"} if status == "KILLED" else {}
        ids[status] = client.create_run(experiment, run_name=status.lower(), tags=tags).info.run_id
        if status != "RUNNING":
            client.set_terminated(ids[status], status)
    return ids


NO_SUCH_RUN = "run_id=nope123: no such run in sqlite:///"
NOT_FINISHED = "run_id={id}: run is {status}, not FINISHED"


# id, stage, the run's status ({id} in args and message; None: no run), args, the message's fragment
ON_A_RUN = [
    ("explain-no-such-run", "explain", None, ["run_id=nope123"], NO_SUCH_RUN),
    ("report-no-such-run", "report", None, ["run_id=nope123"], NO_SUCH_RUN),
    ("robustness-no-such-run", "robustness", None, ["run_id=nope123"], NO_SUCH_RUN),
    ("reproduce-no-such-run", "reproduce", None, ["run_id=nope123"], NO_SUCH_RUN),
    ("reproduce-bad-show", "reproduce", None, ["run_id=nope123", "reproduce.show=some"],
     "invalid config reproduce.show: 'some'; expected one of ['differing', 'all']"),
    ("report-no-such-sweep", "report", None, ["sweep_id=nope123"], "sweep_id=nope123: no such run in sqlite:///"),
    ("report-no-id", "report", None, [], "give exactly one of run_id=<run id> or sweep_id=<sweep parent run id>"),
    ("explain-logger-none", "explain", None, ["run_id=nope123", "logger=none"], "logger=none has no runs"),
    ("explain-running", "explain", "RUNNING", ["run_id={id}"], NOT_FINISHED),
    ("explain-failed", "explain", "FAILED", ["run_id={id}"], NOT_FINISHED),
    ("report-running", "report", "RUNNING", ["run_id={id}"], NOT_FINISHED),
    ("report-killed", "report", "KILLED", ["run_id={id}"],
     NOT_FINISHED + "; continue it with python -m pipeline.run resume={id}"),
    ("robustness-failed", "robustness", "FAILED", ["run_id={id}"], NOT_FINISHED),
    # A good run and bad input: rejected before the run is reopened, so it stays FINISHED.
    ("robustness-not-explained", "robustness", "FINISHED", ["run_id={id}"],
     "run_id={id}: has no explanations/attributions.parquet artifact; run pipeline.explain run_id={id} first"),
    ("explain-no-model", "explain", "FINISHED", ["run_id={id}"],
     "run_id={id}: has no logged model runs:/{id}/model; it was trained with logger.log_model=false"),
    ("explain-short-id-no-match", "explain", None, ["run_id=abcd0123"],
     "run_id=abcd0123: no such run (no run id starts with abcd0123) in sqlite:///"),
    # A prefix that Hydra's grammar would read as a number (the float inf, 1.2e+46) stays the text typed.
    ("explain-id-reads-as-a-float", "explain", None, ["run_id=57e84031"],
     "run_id=57e84031: no such run (no run id starts with 57e84031) in sqlite:///"),
    ("report-sweep-id-reads-as-a-float", "report", None, ["sweep_id=12e45678"],
     "sweep_id=12e45678: no such run (no run id starts with 12e45678) in sqlite:///"),
    ("explain-no-examples", "explain", "FINISHED", ["run_id={id}", "explain.n_examples=0"],
     "invalid config explain.n_examples: must be >= 1, got 0"),
    ("explain-bad-config", "explain", "FINISHED", ["run_id={id}", "explain.methods=[lime]"],
     "invalid config explain.methods: unknown method(s) ['lime']"),
    ("robustness-bad-config", "robustness", "FINISHED", ["run_id={id}", "robustness.attack.n_candidates=0"],
     "invalid config robustness.attack"),
]


@pytest.mark.parametrize(("status", "args", "stage", "expected"),
                         [pytest.param(status, args, stage, expected, id=case)
                          for case, stage, status, args, expected in ON_A_RUN])
def test_rejected_on_a_run_and_runs_untouched(runs, capsys, stage, status, args, expected):
    root, values = Path(runs["root"]), {"id": runs.get(status), "status": status}
    before = store_runs(root)
    args = [a.format(**values) for a in args]
    logger = [] if "logger=none" in args else ["logger.system_metrics=false"]
    message = rejected(stage, [*args, *logger], root, capsys)
    assert expected.format(**values) in message
    assert store_runs(root) == before


# ------------------------------------------------------------- accepted, but counted and reported
def test_long_texts_are_truncated_counted_and_reported(files, caplog):
    cfg = compose_config(files, ["data=files", f"data.source.train={files}/long.csv", "data.max_length=16"])
    with caplog.at_level(logging.WARNING):
        job = build_job(cfg)
    stats = job.datamodule.stats
    assert stats["n_truncated"] == 40 and stats["max_tokens"] > 16
    assert "40 texts are longer than max_length=16 tokens and get truncated" in caplog.text
    assert ("truncated to max_length", "40") in _report_data_items(stats)


def test_duplicates_across_splits_are_warned_counted_and_reported(files, caplog):
    # The validation texts differ from train's only in case and spacing: still the same text.
    cfg = compose_config(files, ["data=files", f"data.source.train={files}/train.csv",
                                 f"data.source.validation={files}/dup_val.csv"])
    with caplog.at_level(logging.WARNING):
        job = build_job(cfg)
    stats = job.datamodule.stats
    assert stats["n_duplicates_per_split"]["validation"] == 4
    assert "validation/test texts also appear in an earlier split" in caplog.text
    assert ("texts in two splits", str(stats["n_duplicates_across_splits"])) in _report_data_items(stats)


def test_label_only_outside_train_is_warned(files, caplog):
    """Without data.source.label_names the label set is read from every file: a label that train
    never shows is accepted, with a warning (with label_names it is rejected, above)."""
    cfg = compose_config(files, ["data=files", f"data.source.train={files}/train.csv",
                                 f"data.source.validation={files}/neutral.csv"])
    with caplog.at_level(logging.WARNING):
        job = build_job(cfg)
    assert job.datamodule.label_names == ["neg", "neutral", "pos"]
    assert "classes with no training example: ['neutral']" in caplog.text


def _sentences(phrases: dict[str, list[str]], filler: list[str], n: int) -> str:
    """A CSV of `n` rows: each text 3 random filler phrases and one of its label's phrases, no spaces
    (few texts repeat: a word-level vocabulary of min_frequency 2 holds few whole sentences)."""
    labels, rng = sorted(phrases), random.Random(0)
    rows = []
    for i in range(n):
        label = labels[i % len(labels)]
        parts = rng.choices(filler, k=3)
        parts.insert(rng.randrange(4), rng.choice(phrases[label]))
        rows.append(f"{''.join(parts)},{label}\n")
    return "text,label\n" + "".join(rows)


def test_text_without_spaces_is_read_by_character_and_unknown_tokens_counted(tmp_path, caplog):
    """Chinese needs no spaces: its characters are the tokens, no [UNK] (a sentence was one token,
    and a Chinese review set trained to chance, test/acc 0.50; now 0.98). Thai has no spaces either
    and is not split: nearly every token is [UNK], warned, counted and reported; bpe reads it."""
    zh = tmp_path / "zh.csv"
    zh.write_text(_sentences({"好评": ["这部电影很好看", "我非常喜欢"], "差评": ["这部电影很无聊", "我非常讨厌"]},
                             ["今天", "我们", "一起", "去了", "电影院", "朋友"], 80))
    th = tmp_path / "th.csv"
    th.write_text(_sentences({"pos": ["หนังดีมาก", "ชอบมาก"], "neg": ["หนังแย่มาก", "น่าเบื่อมาก"]},
                             ["วันนี้", "เรา", "ไป", "ดู", "กับ", "เพื่อน"], 80))
    with caplog.at_level(logging.WARNING):
        job = build_job(compose_config(tmp_path, ["data=files", f"data.source.train={zh}"]))
    assert job.datamodule.stats["unk_rate_per_split"] == {"train": 0.0, "validation": 0.0, "test": 0.0}
    assert job.datamodule.tokenizer.encode("很无聊").tokens[1:] == ["很", "无", "聊"]
    assert "[UNK]" not in caplog.text
    with caplog.at_level(logging.WARNING):
        job = build_job(compose_config(tmp_path, ["data=files", f"data.source.train={th}"]))
    stats = job.datamodule.stats
    assert stats["unk_rate"] > 0.9
    assert "of the validation split's tokens are [UNK]" in caplog.text and "data.tokenizer.kind=bpe" in caplog.text
    assert ("[UNK] tokens (validation)", f"{100 * stats['unk_rate']:.1f}%") in _report_data_items(stats)
    job = build_job(compose_config(tmp_path, ["data=files", f"data.source.train={th}", "data.tokenizer.kind=bpe"]))
    assert job.datamodule.stats["unk_rate"] < 0.05


def _report_data_items(stats: dict) -> list[tuple[str, str]]:
    """The key/value lines of the run report's Data section for these stats."""
    record = SimpleNamespace(tags={}, datasets=[])
    section = _data_section(record, stats, ["neg", "pos"])
    return [item for block in section.blocks for item in getattr(block, "items", [])]


# ---------------------------------------------------------------------- the real command line
def test_cli_hydra_unknown_key(tmp_path):
    """Without ``+`` Hydra itself refuses the key: its message, exit 1, no traceback."""
    out = run_cli("pipeline.train", "model.colour=blue", cwd=tmp_path)
    assert out.returncode == 1
    assert "Could not override 'model.colour'" in out.stderr and "Traceback" not in out.stderr
    assert store_runs(tmp_path) == {}


def test_cli_unreachable_tracking_uri_fails_fast(tmp_path):
    start = time.monotonic()
    out = run_cli("pipeline.train", "logger.tracking_uri=http://127.0.0.1:9", cwd=tmp_path, timeout=120)
    assert time.monotonic() - start < 60  # MLflow alone would retry for minutes
    assert out.returncode == 2
    assert out.stderr.strip() == error_line(out.stderr)  # one line: no traceback, no warnings
    assert "logger.tracking_uri: tracking server http://127.0.0.1:9 is not reachable" in out.stderr
    assert store_runs(tmp_path) == {}


def test_cli_explain_unfinished_run(runs):
    root = Path(runs["root"])
    before = store_runs(root)
    out = run_cli("pipeline.explain", f"run_id={runs['RUNNING']}", "logger.system_metrics=false", cwd=root)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"run_id={runs['RUNNING']}: run is RUNNING, not FINISHED" in error_line(out.stderr)
    assert store_runs(root) == before  # the RUNNING run is someone else's: left as it was


def test_cli_run_id_prefix_that_reads_as_a_number_stays_text(runs):
    """An 8-character prefix such as 57e84031 is the float inf to Hydra's grammar; about one run
    id in eighty has such a prefix (CI met one)."""
    out = run_cli("pipeline.reproduce", "run_id=57e84031", cwd=Path(runs["root"]))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "run_id=57e84031: no such run (no run id starts with 57e84031)" in error_line(out.stderr)


def test_cli_debug_traceback_shows_the_traceback(tmp_path):
    out = run_cli("pipeline.train", "debug=traceback", "data=files", "data.source.train=nope.csv", cwd=tmp_path)
    assert out.returncode != 0
    assert "Traceback" in out.stderr and "nope.csv (train): file not found" in out.stderr
    assert store_runs(tmp_path) == {}


def test_cli_a_group_option_yaml_reads_as_a_boolean_is_an_unknown_option(tmp_path):
    """debug=true (YAML's true) failed inside Hydra with a 25-line traceback until 2026-12-03."""
    out = run_cli("pipeline.run", "debug=true", cwd=tmp_path)
    assert out.returncode == 1 and "Could not find 'debug/true'" in out.stderr and "traceback" in out.stderr
    assert "Traceback" not in out.stderr and store_runs(tmp_path) == {}


def test_cli_bad_group_option_points_to_debug_traceback(tmp_path):
    """A misspelled group option is Hydra's error (exit 1, its list of options); its hint names the
    project's switch, and that switch really shows the traceback of such an error."""
    out = run_cli("pipeline.run", "model=smal", cwd=tmp_path)
    assert out.returncode == 1 and "Could not find 'model/smal'" in out.stderr and "tiny" in out.stderr
    assert "Add debug=traceback to the command" in out.stderr
    assert "HYDRA_FULL_ERROR" not in out.stderr and "Traceback" not in out.stderr
    full = run_cli("pipeline.run", "model=smal", "debug=traceback", cwd=tmp_path)
    assert full.returncode == 1 and "Traceback" in full.stderr and "Could not find 'model/smal'" in full.stderr
    assert store_runs(tmp_path) == {}
