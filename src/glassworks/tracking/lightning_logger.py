"""A Lightning logger that writes into a run we already own, in batches.

One ``log_metric`` on sqlite costs ~15 ms; a step-level metric logged one by one would cost
more than the step. Metrics are buffered and sent with one ``log_batch`` once N steps *and* a
few seconds have passed since the last, by one thread of ours while training goes on. The
seconds bound what sending costs whatever a step takes: a ``log_batch`` is ~15 ms of that thread's
CPU, which on a CPU training run comes out of the training's own cores; every 50 steps of the
default model's ~9 ms steps that was 3-5% of the fit (bench/bench_train.py, logger mlflow/none).
A checkpoint (``persist``) and the end of the fit send everything at once regardless.

Not MLflow's own asynchronous logging (``log_batch(synchronous=False)``): its queue thread waits
for new batches in ``queue.get(timeout=1)`` and notices the end of the run only after that
timeout, so ``set_terminated`` (which shuts the queue down) stood ~1 s idle at the end of every
run. Our executor's idle thread wakes at once when it is shut down.
"""

from __future__ import annotations

import logging
import time
from argparse import Namespace
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric
from pytorch_lightning.loggers.logger import Logger, rank_zero_experiment
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from glassworks.tracking.history import unlogged
from glassworks.tracking.store import StoreUnreachable, is_unreachable, with_retry

log = logging.getLogger(__name__)

BATCH_LIMIT = 1000  # metrics one log_batch request may hold (MLflow's limit)


class MLflowRunLogger(Logger):
    def __init__(self, tracking_uri: str, run_id: str, flush_every_n_steps: int = 50,
                 logged: set[tuple[str, int]] | None = None, server_timeout_s: float = 120.0,
                 flush_min_interval_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        # Points a resumed run already holds (see glassworks.tracking.history).
        self._logged = logged or set()
        self._tracking_uri = tracking_uri
        self._run_id = run_id
        self._flush_every = flush_every_n_steps
        self._server_timeout_s = server_timeout_s
        self._gave_up = False
        self._buffer: list[Metric] = []
        self._pending: list[tuple[list[Metric], Future]] = []
        self._sender: ThreadPoolExecutor | None = None  # one thread: batches reach the store in order
        self._last_flush_step = 0
        self._flush_min_interval_s = flush_min_interval_s
        self._clock = clock
        self._last_flush_time = clock()
        self._client: MlflowClient | None = None
        self.n_requests = 0

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_client"] = None
        state["_buffer"] = []
        state["_pending"] = []
        state["_sender"] = None
        return state

    @property
    def name(self) -> str:
        return "mlflow"

    @property
    def version(self) -> str:
        return self._run_id

    @property
    def run_id(self) -> str:
        return self._run_id

    @property
    @rank_zero_experiment
    def experiment(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(tracking_uri=self._tracking_uri)
        return self._client

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace) -> None:
        # The entry point logs the whole composed config as params; the module's own
        # hparams (model spec) would only duplicate it under other names.
        return None

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        step = int(step or 0)
        for key, value in metrics.items():
            if key == "epoch":
                continue
            self._buffer.append(Metric(key, float(value), now, step))
        clock = self._clock()
        due = (step - self._last_flush_step >= self._flush_every
               and clock - self._last_flush_time >= self._flush_min_interval_s)
        if due or len(self._buffer) >= BATCH_LIMIT:
            self.flush()
            self._last_flush_step, self._last_flush_time = step, clock

    def flush(self) -> None:
        if not self._buffer:
            return
        batch, self._buffer = unlogged(self._buffer, self._logged), []
        client = self.experiment
        if self._sender is None:
            self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="glassworks-metrics")
        for i in range(0, len(batch), BATCH_LIMIT):
            chunk = batch[i : i + BATCH_LIMIT]
            # Written while training goes on; wait() in finalize/save makes sure nothing is lost
            # before the run moves on.
            self._pending.append((chunk, self._sender.submit(client.log_batch, self._run_id, metrics=chunk)))
            self.n_requests += 1

    def persist(self) -> None:
        """Everything logged so far is in the store when this returns (before a checkpoint)."""
        self.flush()
        self.wait()

    def wait(self) -> None:
        """Block until every queued batch is in the store. A batch the sender could not write (the
        tracking server was down or restarting) is sent again, the same points with the same
        timestamps, which the store keeps once, until ``server_timeout_s``; then
        :class:`~glassworks.tracking.store.StoreUnreachable`."""
        pending, self._pending = self._pending, []
        for chunk, sent in pending:
            try:
                sent.result()
            except Exception as error:  # noqa: BLE001 - only an unreachable server is retried
                if not is_unreachable(error):
                    raise
                log.warning("a metrics batch (%d points) did not reach the tracking server; sending it again",
                            len(chunk))
                try:
                    with_retry(lambda c=chunk: self.experiment.log_batch(self._run_id, metrics=c),
                               "logging metrics", timeout_s=self._server_timeout_s)
                except StoreUnreachable:
                    self._gave_up = True
                    raise

    @rank_zero_only
    def finalize(self, status: str) -> None:
        # The run's status belongs to the tracker (the pipeline continues after training).
        if self._gave_up:
            return  # the server is gone: the error on its way up says so, waiting again would not help
        self.persist()
        if self._sender is not None:  # idle now; a later flush (the test loop) starts another
            self._sender.shutdown()
            self._sender = None

    @rank_zero_only
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        return None

