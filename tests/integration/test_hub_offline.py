"""A hub id on a machine that cannot reach the Hugging Face Hub: a copy in the local cache loads
at once, anything else fails at once with what to do, and nothing is retried (huggingface_hub's
five retries with back-off took ~27 s a load). The hub here is a closed port on loopback
(``HF_ENDPOINT``), the cache a real hub-layout cache in a temp folder (``HF_HOME``)."""

from __future__ import annotations

import http.server
import shutil
import socket
import threading
import time

import pytest
from huggingface_hub import constants

from glassworks.data.errors import DataError
from glassworks.data.sources import HubSource, SyntheticSource
from glassworks.hub import PROXY_VARIABLES, offline_when_unreachable, unreachable_hub
from glassworks.models.hf_encoder import load_hf_config
from glassworks.testing.hf import tiny_bert_dir
from glassworks.validation import ConfigError
from tests.conftest import run_cli

REVISION = "0123456789abcdef0123456789abcdef01234567"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cache_model(folder, hub_cache, repo_id: str) -> None:
    """`folder`'s files as huggingface_hub caches a download of `repo_id` at main."""
    repo = hub_cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / REVISION)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)


def hub_env(tmp_path, endpoint: str) -> dict[str, str]:
    """A command's environment: the hub at `endpoint`, the cache under `tmp_path`, no offline
    mode or proxy of this machine's."""
    return {"HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "",
            **{name: "" for name in PROXY_VARIABLES}}


@pytest.fixture
def no_hub(monkeypatch):
    """This process's hub endpoint is a closed port (what huggingface_hub reads at each call)."""
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    return constants.ENDPOINT


def test_an_unreachable_hub_is_named_and_its_offline_mode_lasts_the_block(no_hub, tmp_path):
    assert unreachable_hub().startswith(f"no connection to 127.0.0.1:{no_hub.rsplit(':', 1)[1]}")
    before = constants.HF_HUB_OFFLINE
    with offline_when_unreachable("a test load") as reason:
        assert reason and constants.is_offline_mode()
    assert constants.HF_HUB_OFFLINE == before
    with offline_when_unreachable("a folder", str(tmp_path)) as reason:  # a folder is never probed
        assert reason is None and constants.HF_HUB_OFFLINE == before


@pytest.mark.parametrize("load, match", [
    (lambda tmp: HubSource(name="nobody/no-dataset", cache_dir=str(tmp)).load(), "save_to_disk"),
    (lambda tmp: load_hf_config("nobody/no-model"), "give a folder with save_pretrained files"),
])
def test_what_is_not_cached_fails_at_once_with_what_to_do(no_hub, tmp_path, caplog, load, match):
    start = time.perf_counter()
    with pytest.raises((DataError, ConfigError), match=match) as error:
        load(tmp_path)
    assert "cannot be reached from this machine (no connection to 127.0.0.1" in str(error.value)
    assert "no copy is in the local cache" in str(error.value)
    assert "Retrying" not in caplog.text, f"retried for {time.perf_counter() - start:.1f} s"


@pytest.mark.slow
def test_a_cached_model_trains_while_the_hub_is_unreachable(tmp_path):
    splits = SyntheticSource(n_train=200, n_validation=50, n_test=50).load().splits
    folder = tiny_bert_dir(tmp_path / "tiny-bert", [t for s in splits.values() for t in s["text"]], max_positions=48)
    cache_model(folder, tmp_path / "hf" / "hub", "someone/tiny-bert")
    env = hub_env(tmp_path, f"http://127.0.0.1:{closed_port()}")
    out = run_cli("pipeline.train", "model=hf", "model.pretrained=someone/tiny-bert", "optimizer.lr=0.002",
                  "data.max_length=40", "data.source.n_train=200", "data.source.n_validation=50",
                  "data.source.n_test=50", "trainer=cpu", "trainer.max_epochs=1", "logger=none",
                  cwd=tmp_path, env=env, fresh=True)  # huggingface_hub reads HF_* at import
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    assert log.count("cannot be reached") == 1
    assert "model.pretrained=someone/tiny-bert and every later hub load are read from the local cache only" in log
    assert "Retrying" not in log and "test/acc" in log


class _NothingHere(http.server.BaseHTTPRequestHandler):
    """A hub that answers, and has nothing: 404 to every request."""

    def do_GET(self) -> None:
        self.send_response(404)
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, *args) -> None:
        pass


@pytest.mark.slow
def test_a_reachable_hub_without_the_dataset_is_not_mistaken_for_no_network(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NothingHere)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = hub_env(tmp_path, f"http://127.0.0.1:{server.server_address[1]}")
        out = run_cli("pipeline.train", "data=sst2", "logger=none", cwd=tmp_path, env=env, fresh=True)
    finally:
        server.shutdown()
    assert out.returncode != 0
    assert "error: hub dataset 'glue' (name): cannot load: " in out.stderr, out.stderr[-3000:]
    assert "cannot be reached" not in out.stderr and "Retrying" not in out.stderr
