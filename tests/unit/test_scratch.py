"""Scratch folders go with the command that made them, however it ends."""

from __future__ import annotations

import tempfile

import pytest

from glassworks.scratch import scratch_dir, scratch_session


@pytest.fixture
def tmpdir_env(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    yield tmp_path
    tempfile.tempdir = None


def test_session_removes_everything_on_success_and_failure(tmpdir_env):
    with scratch_session() as root:
        inner = scratch_dir("explain")
        (inner / "a.txt").write_text("x")
        with scratch_session() as nested:  # a stage called by pipeline.run shares the folder
            assert nested == root
        assert inner.parent == root and inner.name.startswith("glassworks-explain-")
    assert list(tmpdir_env.iterdir()) == []
    with pytest.raises(RuntimeError):
        with scratch_session():
            scratch_dir("report")
            raise RuntimeError("boom")
    assert list(tmpdir_env.iterdir()) == []


def test_outside_a_session_it_is_a_plain_temp_folder(tmpdir_env):
    path = scratch_dir("model")
    assert path.parent == tmpdir_env and path.name.startswith("glassworks-model-")
