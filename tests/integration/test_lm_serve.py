"""``mlflow models serve`` on the lm pyfunc: a real scoring server on 127.0.0.1 takes prompts and
answers with the text the model generates (greedy, as loading the model in-process does)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import mlflow
import pytest
import torch

from glassworks.data.lm_tasks import RecallTask
from glassworks.data.lm_vocab import WordVocab
from glassworks.models.decoder import DecoderConfig
from glassworks.models.generation import generate
from glassworks.tracking.pyfunc_lm import GENERATED_COLUMN, PROMPT_COLUMN, save_lm_pyfunc

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_mlflow_models_serve_answers_prompts_with_generated_text(tmp_path):
    vocab = WordVocab.from_symbols(RecallTask().symbols())
    torch.manual_seed(0)
    model = DecoderConfig(d_model=32, n_heads=2, n_layers=1, d_ff=64, max_positions=16).build(len(vocab), 0).eval()
    with torch.no_grad():
        model.tok_emb.weight.mul_(20)  # varied greedy outputs from an untrained model
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    run = client.create_run(client.create_experiment("lm", artifact_location=str(tmp_path / "artifacts")))
    client.log_artifacts(run.info.run_id, str(save_lm_pyfunc(model, vocab, tmp_path / "model", ["k1 v2 ? k1"])),
                         "model")
    client.set_terminated(run.info.run_id)

    port = _free_port()
    # The scoring server execs `uvicorn` from PATH: the venv's bin must be on it (as when activated).
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
           "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}",
           "TMPDIR": str(tmp_path)}  # MLflow's server leaves its model download behind when stopped
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"runs:/{run.info.run_id}/model",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 300  # a loaded 2-core machine measured more than 120 s for the classifier's
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2).read()
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-2000:]
                assert time.time() < deadline, "model server did not start"
                time.sleep(1)
        prompts = ["k1 v2 k3 v4 ? k3", "k5 v6 ? k5"]
        body = json.dumps({"dataframe_records": [{PROMPT_COLUMN: p} for p in prompts],
                           "params": {"max_new_tokens": 3}}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(request, timeout=60).read())
        expected = [vocab.decode(generate(model, vocab.encode(p), 3, vocab.eos_id)) for p in prompts]
        assert [row[GENERATED_COLUMN] for row in answer["predictions"]] == expected

        too_long = json.dumps({"dataframe_records": [{PROMPT_COLUMN: " ".join(["k1"] * 14)}],
                               "params": {"max_new_tokens": 3}}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=too_long,
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=60)
        assert "exceeds the model's context of 16" in refused.value.read().decode()
    finally:
        server.terminate()  # by its pid; uvicorn's workers follow their parent
        server.wait(timeout=30)
