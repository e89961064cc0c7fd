"""Short run ids: any unique prefix resolves, in every experiment, on a real sqlite store."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from glassworks.tracking.run_ids import RunIdError, resolve_run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[MlflowClient, list[str]]:
    root = tmp_path_factory.mktemp("store")
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    other = client.create_experiment("other", artifact_location=(root / "artifacts").as_uri())
    ids = [client.create_run("0", run_name=f"run{i}").info.run_id for i in range(16)]
    ids.append(client.create_run(other, run_name="elsewhere").info.run_id)
    return client, ids


def test_a_unique_prefix_resolves_in_any_experiment(store):
    client, ids = store
    for run_id in ids:
        prefix = next(run_id[:n] for n in range(8, 33) if sum(i.startswith(run_id[:n]) for i in ids) == 1)
        assert resolve_run_id(client, prefix) == run_id
        assert resolve_run_id(client, prefix.upper()) == run_id  # as copied from anywhere
    assert resolve_run_id(client, ids[0]) == ids[0]  # a full id is not even looked up


def test_ambiguous_prefix_lists_the_candidates(store):
    client, ids = store
    # 17 ids, 16 hex digits: two share a first character. min_prefix=1 lets it be used as a prefix.
    prefix = next(c for c in "0123456789abcdef" if sum(i.startswith(c) for i in ids) > 1)
    candidates = [i for i in ids if i.startswith(prefix)]
    with pytest.raises(RunIdError) as error:
        resolve_run_id(client, prefix, "report.run_id", min_prefix=1)
    message = str(error.value)
    assert message.startswith(f"report.run_id={prefix} is ambiguous, {len(candidates)} runs match: ")
    assert all(c in message for c in candidates) and "give more characters" in message


def test_no_match_and_non_prefixes(store):
    client, ids = store
    unused = next(p for p in (f"{n:04x}" for n in range(65536)) if not any(i.startswith(p) for i in ids))
    with pytest.raises(RunIdError, match=f"sweep_id={unused}: no such run"):
        resolve_run_id(client, unused, "sweep_id")
    assert resolve_run_id(client, "nope123") == "nope123"  # not hex: the caller says "no such run"
    with pytest.raises(RunIdError, match="run_id=abc: give at least 4 characters of a run id"):
        resolve_run_id(client, "abc")  # too short to be meant as a prefix (it said "no such run")
