"""CLI subprocesses run this checkout's code, not that of another editable install."""

from __future__ import annotations

import os

from tests.conftest import ROOT, assert_imports_this_checkout, cli_env, imported_packages


def test_cli_env_puts_this_checkouts_src_first(tmp_path):
    env = cli_env(tmp_path)
    assert env["PYTHONPATH"].split(os.pathsep) == [str(ROOT / "src"), str(ROOT)]
    faults = cli_env(tmp_path, {"PYTHONPATH": str(ROOT / "tests" / "faults"), "GLASSWORKS_FAULT": "x"})
    assert faults["PYTHONPATH"].split(os.pathsep) == [str(ROOT / "tests" / "faults"), str(ROOT / "src"), str(ROOT)]
    assert faults["GLASSWORKS_FAULT"] == "x" and faults["GLASSWORKS_ROOT"] == str(tmp_path)


def test_subprocess_imports_this_checkout_even_with_another_first_on_the_path(tmp_path):
    assert_imports_this_checkout(cli_env(tmp_path), tmp_path)
    # The check can fail: a shadowing glassworks earlier on the path is what it reports.
    other = tmp_path / "other_checkout" / "glassworks"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text("")
    shadowed = cli_env(tmp_path, {"PYTHONPATH": str(other.parent)})
    assert imported_packages(shadowed, tmp_path)["glassworks"] == (other / "__init__.py").resolve()
