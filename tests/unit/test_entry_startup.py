"""`python -m pipeline.<entry>` imports without the cyclic collector, and every entry turns it back on."""

from __future__ import annotations

import ast
import gc
import subprocess
import sys

from tests.conftest import ROOT, cli_env

ENTRY_MODULES = sorted(p for p in (ROOT / "pipeline").glob("*.py") if 'if __name__ == "__main__":' in p.read_text())


def test_every_entry_point_calls_imports_done_first_in_its_main_block():
    assert {p.stem for p in ENTRY_MODULES} >= {"run", "train", "explain", "robustness", "report", "reproduce", "doctor"}
    for path in ENTRY_MODULES:
        tree = ast.parse(path.read_text())
        mains = [node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "__name__ == '__main__'"]
        assert len(mains) == 1, path
        first = mains[0].body[0]
        # Without it the collector stays off for the whole command.
        assert ast.unparse(first) == "imports_done()", f"{path.name}: the __main__ block starts with {ast.unparse(first)!r}"


def test_python_dash_m_imports_without_the_collector_and_imports_done_freezes_them(tmp_path):
    # What `python -m pipeline.run` does: runpy imports the package while sys.argv[0] is "-m", then
    # runs the module as __main__, whose first statement is imports_done().
    probe = (
        "import gc, sys\n"
        "sys.argv[:1] = ['-m']\n"
        "import pipeline.doctor\n"
        "assert not gc.isenabled(), 'collector on during the imports'\n"
        "from pipeline import imports_done\n"
        "imports_done()\n"
        "assert gc.isenabled(), 'collector still off'\n"
        "print(gc.get_freeze_count())\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=cli_env(tmp_path),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.split()[-1]) > 50_000  # MLflow, SQLAlchemy, pandas: never scanned again


def test_importing_the_entry_points_as_a_library_leaves_the_collector_alone():
    import pipeline  # pytest's argv[0] is not "-m"

    assert callable(pipeline.imports_done) and gc.isenabled()
