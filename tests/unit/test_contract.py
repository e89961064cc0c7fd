"""The run contract: every tag key and artifact path is spelled once, in glassworks.tracking.contract."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from glassworks.tracking import contract as C

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "src" / "glassworks" / "tracking" / "contract.py"


def _contract_names() -> dict[str, str]:
    """Tag keys and artifact paths (values with a dot or a slash: folder names such as "model"
    are ordinary words elsewhere too)."""
    return {name: value for name, value in vars(C).items()
            if name.isupper() and isinstance(value, str) and ("." in value or "/" in value)}


def _string_literals(path: Path) -> list[tuple[int, str]]:
    """String constants of a module, docstrings excluded."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_every_tag_key_and_artifact_path_is_spelled_only_in_the_contract():
    values = set(_contract_names().values())
    found = []
    for folder in (ROOT / "src" / "glassworks", ROOT / "pipeline"):
        for path in sorted(folder.rglob("*.py")):
            if path == CONTRACT:
                continue
            found += [f"{path.relative_to(ROOT)}:{line}: {text!r}" for line, text in _string_literals(path)
                      if text in values]
    assert not found, "spelled outside glassworks.tracking.contract:\n" + "\n".join(found)


def test_each_name_is_defined_once_in_the_contract():
    literals = [text for _, text in _string_literals(CONTRACT)]
    names = _contract_names()
    aliases = {"TAG_MODEL_SWEEP_ID"}  # the registered model carries the sweep-id tag as well
    for name, value in names.items():
        if name not in aliases:
            assert literals.count(value) == 1, (name, value)


@pytest.mark.parametrize(("name", "at", "expected"), [("flip_rate", 5, "flip_rate_at_5"),
                                                      ("comprehensiveness", "10", "comprehensiveness_at_10")])
def test_cut_off_metric_keys_are_mlflow_safe_at_the_source(name, at, expected):
    assert C.at_key(name, at) == expected
    from glassworks.tracking.tracker import metric_name

    assert metric_name(expected) == expected  # nothing left for the tracker to rewrite


def test_metric_specs_name_direction_and_display():
    keys = [m.key for m in C.ROBUSTNESS_METRICS]
    assert C.flip_rate_key(1) in keys and all("@" not in k for k in keys)
    sufficiency = next(m for m in C.EXPLAIN_METRICS if m.key == "sufficiency")
    assert not sufficiency.higher_is_better and sufficiency.display.endswith("↓")
    assert C.prefixed(C.EXPLAIN_PREFIX, {"shap/aopc": 1.0}) == {"explain/shap/aopc": 1.0}
    assert C.stage_time_key("train") == "time/train_s"


def test_artifact_helpers():
    assert C.file_name(C.ATTRIBUTIONS) == "attributions.parquet"
    assert C.relative_to(C.EXPLAIN_EXAMPLES_DIR, C.EXPLANATIONS_DIR) == "examples"
    assert C.ATTRIBUTIONS.startswith(C.EXPLANATIONS_DIR + "/") and C.ATTACKS.startswith(C.ROBUSTNESS_DIR + "/")
    assert C.checkpoint_artifact("best.ckpt") == "checkpoints/best.ckpt"
