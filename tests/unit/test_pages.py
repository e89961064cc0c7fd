"""What makes pages readable, one piece at a time: the figure style the saver enforces and
measures, the agreement matrix, the per-bin note, the command line as typed, no machine paths."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from glassworks.explain.metrics import agreement_matrix, bin_tokens, bins_note
from glassworks.render.png import png_bytes, style_of
from glassworks.render.style import MIN_FONT_PT, figure_style, new_figure
from glassworks.report.figures import accuracy_vs_explanations_png, metric_vs_params_png
from glassworks.report.run_report import dataset_source
from glassworks.robustness.plots import curves_png
from glassworks.tracking import contract as C
from glassworks.tracking.metadata import command_line, shareable


def test_saver_raises_small_fonts_and_records_what_it_drew():
    with figure_style():
        fig = new_figure(4, 3)
        ax = fig.subplots()
        ax.plot([1, 2, 3, 4], [0.1, 0.4, 0.2, 0.3])
        ax.set_title("tiny", fontsize=5)
        ax.set_xlabel("epoch", fontsize=6)
    style = style_of(png_bytes(fig))
    assert style["min_font_pt"] == MIN_FONT_PT and style["min_font_px"] == pytest.approx(12.5)
    (axes,) = style["axes"]
    assert axes["x"]["integer_data"] and all(t.lstrip("−-").isdigit() for t in axes["x"]["ticks"])
    assert axes["y"]["integer_data"] is False and any("." in t for t in axes["y"]["ticks"])


def test_a_png_not_written_by_the_saver_has_no_style():
    from PIL import Image
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG")
    assert style_of(buffer.getvalue()) is None


def test_integer_sweep_parameter_gets_integer_ticks_and_a_labelled_best():
    png = metric_vs_params_png({"model.n_layers": ["1", "2", "3"]}, [0.5, 0.7, 0.6], "val/acc", best=1)
    style = style_of(png)
    (axes,) = style["axes"]
    assert axes["x"]["ticks"] == ["1", "2", "3"]  # never 1.2, 1.4, ...
    assert style["min_font_pt"] >= MIN_FONT_PT


def test_robustness_curves_have_integer_k_and_readable_legend(tmp_path):
    curves = {f"method_{i}": np.linspace(1, 0.1 * i, 5) for i in range(8)}
    curves[C.ROBUSTNESS_BASELINE] = np.linspace(1, 0.5, 5)
    style = style_of(curves_png(curves, tmp_path / "c.png", "deletion").read_bytes())
    (axes,) = style["axes"]
    assert all(t.isdigit() for t in axes["x"]["ticks"]) and style["min_font_pt"] >= MIN_FONT_PT


def test_tied_methods_are_all_drawn():
    png = accuracy_vs_explanations_png([0.8, 0.9], {"shap": [0.2, 0.3], "rollout": [0.2, 0.3],
                                                    C.EXPLAIN_BASELINE: [0.1, 0.1]}, "test/acc", "comprehensiveness")
    assert style_of(png)["min_font_pt"] >= MIN_FONT_PT


def test_agreement_pairs_become_a_symmetric_matrix_with_the_baseline_last():
    methods, matrix = agreement_matrix({"flow_vs_grad_attention": 0.5, f"{C.EXPLAIN_BASELINE}_vs_shap": 0.1,
                                        "flow_vs_shap": math.nan})
    assert methods == ["flow", "grad_attention", "shap", C.EXPLAIN_BASELINE]
    assert matrix[0][1] == matrix[1][0] == 0.5 and matrix[2][3] == matrix[3][2] == 0.1
    assert all(matrix[i][i] == 1.0 for i in range(4)) and matrix[1][2] is None
    with pytest.raises(ValueError, match="not '<a>_vs_<b>'"):
        agreement_matrix({"flow": 0.3})


def test_bins_note_names_the_bins_that_mask_the_same_tokens():
    assert [bin_tokens(f, 9) for f in (0.01, 0.05, 0.1, 0.2, 0.5)] == [1, 1, 1, 2, 4]
    note = bins_note((0.01, 0.05, 0.1, 0.2, 0.5), [10, 10, 11])
    assert "1%, 5%, 10% all mask 1 token" in note and "n = 9" in note
    assert bins_note((0.1, 0.5), [101]) is None  # 10 and 50 tokens: nothing to explain


def test_command_line_is_what_was_typed():
    assert command_line(["/home/me/proj/pipeline/run.py", "seed=1", "explain.methods=[shap,rollout]", "run_name=a b"],
                        "pipeline.run") == "python -m pipeline.run seed=1 explain.methods=[shap,rollout] 'run_name=a b'"
    assert command_line(["/home/me/proj/scripts/go.py", "x=1"], "", "/home/me/proj") == "python scripts/go.py x=1"
    assert command_line(["/elsewhere/go.py"], "", "/home/me/proj") == "python go.py"


def test_shareable_text_has_no_path_of_the_machine():
    text = ("python3.11 /home/me/proj/pipeline/run.py paths.root_dir=/data/typed "
            "logger.tracking_uri=sqlite:////home/me/proj/mlruns/mlflow.db out=/home/me/proj/outputs/x "
            "art=file:///home/me/proj/mlruns/artifacts uri=http://user:secret@host:5000")
    shown = shareable(text, "/home/me/proj")
    assert "/home/me" not in shown and "secret" not in shown
    assert shown.startswith("python -m pipeline.run ") and "paths.root_dir=/data/typed" in shown
    assert "sqlite:///mlruns/mlflow.db" in shown and "out=outputs/x" in shown and "art=mlruns/artifacts" in shown


@pytest.mark.parametrize(("source", "shown"), [
    (json.dumps({"tags": {"uri": "synthetic://sentiment?n_train=400"}}), "synthetic://sentiment?n_train=400"),
    (json.dumps({"uri": "/home/me/proj/data/train.csv"}), "data/train.csv"),
    ("hf://sst2", "hf://sst2"),
])
def test_dataset_source_is_a_location(source, shown, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the project root a report is built from
    result = dataset_source(source.replace("/home/me/proj", str(tmp_path)))
    assert result == shown


def test_a_single_integer_point_gets_one_integer_tick():
    with figure_style():
        fig = new_figure(4, 3)
        fig.subplots().plot([9], [1.02], marker="o")  # one epoch's value at step 9
    (axes,) = style_of(png_bytes(fig))["axes"]
    assert axes["x"]["ticks"] == ["9"]
