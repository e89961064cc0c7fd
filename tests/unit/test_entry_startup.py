"""`python -m pipeline.<entry>` imports without the cyclic collector, and every entry turns it back on."""

from __future__ import annotations

import ast
import gc
import os
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
        "frozen = gc.get_freeze_count()\n"
        # A sweep worker's second job calls it again: the first job's garbage is not frozen.
        "garbage = [[] for _ in range(10_000)]\n"
        "imports_done()\n"
        "print(frozen, gc.get_freeze_count())\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=cli_env(tmp_path),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    frozen, again = map(int, out.stdout.split()[-2:])
    assert frozen > 50_000 and again == frozen  # MLflow, SQLAlchemy, pandas: never scanned again


def test_importing_the_entry_points_as_a_library_leaves_the_collector_alone():
    import pipeline  # pytest's argv[0] is not "-m"

    assert callable(pipeline.imports_done) and gc.isenabled()


def test_every_hydra_task_function_calls_imports_done_first():
    # A joblib or submitit sweep worker imports the entry module to unpickle its task function
    # and then calls it: the job's first statement turns the collector back on.
    for path in ENTRY_MODULES:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and any("hydra.main" in ast.unparse(d) for d in node.decorator_list):
                assert ast.unparse(node.body[0]) == "imports_done()", f"{path.name}: {node.name} starts with {ast.unparse(node.body[0])!r}"


def test_the_launchers_processes_are_recognised_and_nothing_else(tmp_path):
    import multiprocessing

    import submitit
    from joblib import Parallel, delayed

    from glassworks.startup import RANK_MARK, marking_spawned_ranks, this_process_starts_with_imports

    # A joblib sweep worker (loky) and a submitit job import their job's task function to run it.
    assert Parallel(n_jobs=2, backend="loky")(delayed(this_process_starts_with_imports)() for _ in range(2)) == [True, True]
    executor = submitit.LocalExecutor(folder=tmp_path / "submitit")
    executor.update_parameters(timeout_min=5)
    assert executor.submit(this_process_starts_with_imports).result() is True
    # A process spawned while a fit marks its DDP ranks (tests/integration/test_run_states.py
    # probes real ranks).
    with marking_spawned_ranks(True):
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            assert pool.apply(this_process_starts_with_imports) is True
    assert RANK_MARK not in os.environ
    # pytest (this process), a forked or spawned child of it, a script, `python -c`: left alone.
    assert this_process_starts_with_imports() is False
    for method in ("fork", "spawn"):
        with multiprocessing.get_context(method).Pool(1) as pool:
            assert pool.apply(this_process_starts_with_imports) is False, method
    with marking_spawned_ranks(False), multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(this_process_starts_with_imports) is False  # a fit that spawns no ranks
    script = tmp_path / "script.py"
    script.write_text("from glassworks.startup import this_process_starts_with_imports as f\nprint(f())\n")
    for command in ([sys.executable, str(script)], [sys.executable, "-c", script.read_text()]):
        out = subprocess.run(command, cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True, timeout=120)
        assert out.stdout.split() == ["False"], out.stderr[-2000:]

