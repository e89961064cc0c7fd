"""ExplainRunner end to end on a tiny random-weight Transformer with the real explainers."""

from __future__ import annotations

import json
import math
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
import torch

from glassworks.explain.attention import FlowExplainer, GradAttentionExplainer, RawAttentionExplainer, RolloutExplainer
from glassworks.explain.gradient import InputXGradientExplainer
from glassworks.explain.predict import predict_proba
from glassworks.explain.runner import TABLE_COLUMNS, ExplainResult, ExplainRunner
from glassworks.explain.shap import ShapExplainer
from glassworks.explain.types import ExampleInput, Explanation
from glassworks.models import TransformerConfig

PAD, UNK, CLS, MASK = 0, 1, 2, 3
LABELS = ["neg <script>alert(1)</script>", 'pos "><img src=x onerror=alert(1)>']
N_LAYERS, N_HEADS = 2, 2


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = TransformerConfig(d_model=16, n_heads=N_HEADS, n_layers=N_LAYERS, d_ff=32, dropout=0.0, max_positions=32)
    return config.build(vocab_size=40, n_classes=2, pad_id=PAD).eval()


def _examples(n: int = 4) -> list[ExampleInput]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        t = 6 + 2 * i
        ids = [CLS] + rng.integers(4, 40, size=t - 1).tolist()
        tokens = ["[CLS]"] + [f"w{x}" for x in ids[1:]]
        tokens[1] = "<!--<script>x</script>"  # data text must stay inert in every page
        rationale = [0] + [int(x % 3 == 0) for x in ids[1:]] if i != 1 else None
        if rationale is not None and sum(rationale) == 0:
            rationale[1] = 1
        out.append(
            ExampleInput(
                example_id=10 + i, text=" ".join(tokens[1:]), label=i % 2, ids=ids, tokens=tokens, rationale=rationale
            )
        )
    return out


class NanExplainer:
    """A method that fails numerically on every other example."""

    name = "nan_method"

    def explain(self, model, examples):
        return [
            Explanation(
                method=self.name, example_id=e.example_id, target=0,
                scores=np.full(len(e.ids), np.nan) if i % 2 == 0 else np.arange(len(e.ids), dtype=float),
                base_value=None, model_output=0.5, class_scores=None, seconds=0.0,
            )  # fmt: skip
            for i, e in enumerate(examples)
        ]


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        assert not [a for a, _ in attrs if a.startswith("on")]


def test_runner_writes_every_artifact_with_real_explainers(model, tmp_path):
    examples = _examples()
    explainers = [
        ShapExplainer(algorithm="permutation", max_evals=30, pad_id=PAD),  # the cheapest additive SHAP here
        RawAttentionExplainer(pad_id=PAD),
        RolloutExplainer(pad_id=PAD),
        FlowExplainer(pad_id=PAD),
        GradAttentionExplainer(pad_id=PAD),
        InputXGradientExplainer(pad_id=PAD),
        NanExplainer(),
    ]
    runner = ExplainRunner(explainers, mask_id=MASK, pad_id=PAD, n_heatmaps=2, chunk_size=3)
    result = runner.run(model, examples, LABELS, tmp_path / "explanations", context={"run_id": "<b>r1</b>", "seed": 0})
    assert isinstance(result, ExplainResult)
    out = result.out_dir
    methods = ["shap", "raw_attention", "rollout", "flow", "grad_attention", "input_x_gradient", "nan_method", "random_order"]

    # Files.
    files = ("attributions.parquet", "index.html", "metrics.json", "global_importance.png", "metrics.png")
    for name in (*files, "attention_tensors.npz"):
        assert (out / name).is_file(), name
    for ex in examples:
        assert (out / "examples" / f"example_{ex.example_id}.html").is_file()
    assert sorted(p.name for p in (out / "attention").iterdir()) == ["example_10.png", "example_11.png"]
    with np.load(out / "attention_tensors.npz") as npz:
        assert sorted(npz.files) == ["example_10", "example_11"]
        att = npz["example_11"]
        assert att.shape == (N_LAYERS, N_HEADS, 8, 8)
        np.testing.assert_allclose(att.sum(axis=-1), 1.0, atol=1e-5)

    # Metrics: "<method>/<metric>" for every method (random added automatically), agreement pairs.
    for m in methods:
        for metric in (
            "comprehensiveness", "sufficiency", "aopc", "comprehensiveness_at_1", "sufficiency_at_50",
            "seconds_per_example", "rationale_auprc", "rationale_f1",
        ):  # fmt: skip
            assert f"{m}/{metric}" in result.metrics, f"{m}/{metric}"
    assert "agreement/rollout_vs_shap" in result.metrics
    assert sum(k.startswith("agreement/") for k in result.metrics) == len(methods) * (len(methods) - 1) // 2
    finite = {k: v for k, v in result.metrics.items() if not k.startswith("nan_method") and "nan_method" not in k}
    assert all(math.isfinite(v) for k, v in finite.items() if not k.startswith("agreement/")), finite
    assert math.isfinite(result.metrics["nan_method/comprehensiveness"])  # half its examples are usable
    on_disk = json.loads((out / "metrics.json").read_text())  # strict JSON: NaN became null
    assert set(on_disk) == set(result.metrics)

    # Table.
    table = pd.read_parquet(out / "attributions.parquet")
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert len(table) == len(methods) * sum(len(e.ids) for e in examples)
    assert set(table["method"]) == set(methods)
    shap_rows = table[(table["method"] == "shap") & (table["example_id"] == 10)]
    assert shap_rows["base_value"].notna().all()
    # SHAP local accuracy: base value + sum of scores = model output.
    additive = shap_rows["base_value"].iloc[0] + shap_rows["score"].sum()
    assert additive == pytest.approx(shap_rows["model_output"].iloc[0], abs=1e-3)
    assert table[table["example_id"] == 11]["rationale"].isna().all()
    pd.testing.assert_frame_equal(table, result.table, check_dtype=False)

    # Pages: escaped, no scripts, links relative.
    index = (out / "index.html").read_text()
    assert 'href="examples/example_10.html"' in index
    for page in [index, *(p.read_text() for p in (out / "examples").iterdir())]:
        assert "<script" not in page and "<!--" not in page and "http://" not in page and "https://" not in page
        parser = _Tags()
        parser.feed(page)
        assert "script" not in parser.tags


def test_runner_rejects_bad_input(model, tmp_path):
    with pytest.raises(ValueError, match="unique"):
        ExplainRunner([RolloutExplainer(), RolloutExplainer()], mask_id=MASK, pad_id=PAD)
    runner = ExplainRunner([RolloutExplainer(pad_id=PAD)], mask_id=MASK, pad_id=PAD, n_heatmaps=0)
    with pytest.raises(ValueError, match="no examples"):
        runner.run(model, [], LABELS, tmp_path)
    examples = _examples(2)
    examples[1].example_id = examples[0].example_id
    with pytest.raises(ValueError, match="duplicate"):
        runner.run(model, examples, LABELS, tmp_path)


def test_runner_without_heatmaps_still_writes_npz(model, tmp_path):
    runner = ExplainRunner([RolloutExplainer(pad_id=PAD)], mask_id=MASK, pad_id=PAD, n_heatmaps=0)
    result = runner.run(model, _examples(2), LABELS, tmp_path, context={})
    assert (tmp_path / "attention_tensors.npz").is_file()
    assert not (tmp_path / "attention").exists()
    assert set(result.table["method"]) == {"rollout", "random_order"}
    assert "agreement/random_order_vs_rollout" in result.metrics


def test_a_method_limit_skips_examples_counts_them_and_says_so(model, tmp_path, caplog):
    """Examples longer than a method's limit are skipped by that method only: counted as
    <method>/n_skipped, warned about once, named in the result and the index page; its metrics
    cover the other examples and every other method explains them all."""
    examples = _examples()  # 6, 8, 10, 12 tokens
    runner = ExplainRunner([FlowExplainer(max_tokens=8, pad_id=PAD), RolloutExplainer(pad_id=PAD)],
                           mask_id=MASK, pad_id=PAD, n_heatmaps=0, chunk_size=1)
    with caplog.at_level("WARNING", logger="glassworks.explain.runner"):
        result = runner.run(model, examples, LABELS, tmp_path / "explanations")
    assert result.skipped == {"flow": [12, 13], "rollout": [], "random_order": []}
    assert result.metrics["flow/n_skipped"] == 2 and result.metrics["rollout/n_skipped"] == 0
    assert math.isfinite(result.metrics["flow/comprehensiveness"])  # from the two it did
    warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(warnings) == 1 and "explain flow: skipped 2 of 4 examples (ids [12, 13])" in warnings[0]
    assert "explain.flow.max_tokens=8" in warnings[0]
    assert json.loads((result.out_dir / "metrics.json").read_text())["flow/n_skipped"] == 2
    index = (result.out_dir / "index.html").read_text()
    assert "skipped (method limits)" in index and "flow: 2 of 4 examples" in index
    flow_rows = result.table[(result.table["method"] == "flow") & (result.table["example_id"] == 12)]
    assert flow_rows["score"].isna().all()


def test_progress_lines_only_for_a_method_still_running_after_a_second(model, tmp_path, caplog, monkeypatch):
    """A method done in a blink prints its summary line alone; one still running after
    PROGRESS_AFTER_S prints where it is after each chunk but the last (the summary ends it)."""
    import glassworks.explain.runner as runner_module

    def progress(records):
        return [r.getMessage() for r in records if "examples  " in r.getMessage()]

    runner = ExplainRunner([RolloutExplainer(pad_id=PAD)], mask_id=MASK, pad_id=PAD, n_heatmaps=0, chunk_size=1)
    with caplog.at_level("INFO", logger="glassworks.explain.runner"):
        runner.run(model, _examples(), LABELS, tmp_path / "fast")
    assert progress(caplog.records) == []
    assert any("explain rollout" in r.getMessage() and "s/example" in r.getMessage() for r in caplog.records)
    caplog.clear()
    monkeypatch.setattr(runner_module, "PROGRESS_AFTER_S", 0.0)  # every method is "slow"
    with caplog.at_level("INFO", logger="glassworks.explain.runner"):
        runner.run(model, _examples(), LABELS, tmp_path / "slow")
    assert [line.split()[2] for line in progress(caplog.records) if "explain rollout" in line] == ["1/4", "2/4", "3/4"]


def test_the_first_line_counts_right_and_wrong_predictions(model, tmp_path, caplog):
    """The sample to explain holds misclassified examples on purpose: the first line gives the
    counts, never an "accuracy" that reads like test/acc gone wrong."""
    examples = _examples()
    predicted = predict_proba(model, [e.ids for e in examples], PAD).argmax(axis=1)
    wrong = sum(int(p != e.label) for p, e in zip(predicted, examples, strict=True))
    runner = ExplainRunner([RolloutExplainer(pad_id=PAD)], mask_id=MASK, pad_id=PAD, n_heatmaps=0)
    with caplog.at_level("INFO", logger="glassworks.explain.runner"):
        runner.run(model, examples, LABELS, tmp_path / "explanations")
    assert f"explain: 4 examples ({4 - wrong} predicted right, {wrong} wrong), 2 methods" in caplog.text
    assert "accuracy" not in caplog.text
