"""Cross-example batching for explainers that call a model function row-block by row-block.

shap's explainers (Partition, Exact, Permutation) evaluate one example at a time: Partition, for
instance, expands its tree level by level and calls the model ~8 times with ~50 masked rows each.
`RowBatcher.run` runs several examples' explanations at once, one greenlet (a coroutine with its
own stack, so shap's code can stop inside its model call) per example, with their model calls
gathered into large forward passes:

- each task runs until it calls its model function, which submits its rows to the shared
  `RowBatcher` and switches back to the driver;
- when every live task waits (or the pending rows reach `max_pending_rows`), the driver runs ONE
  forward over all pending rows (in chunks of at most `batch_size` rows and `max_tokens` padded
  tokens) and resumes each task with its slice of the outputs.

Everything runs in the caller's thread, one task at a time, and a task stops only inside `submit`
or when it finishes. Two consequences:

- the order of everything is deterministic (tasks resume in the order they submitted);
- numpy's global RNG, which shap uses for Partition's tie-breaking and Permutation's shuffles,
  is saved when a task stops and restored when it resumes, so every task sees exactly the random
  stream it would see running alone (``isolate_rng``; our shap explainers draw from their own
  ``RandomState`` instead and turn it off). Results therefore equal the one-example-at-a-time
  ones up to the last bits of a matmul over a differently shaped batch (different padding and
  batch size).

Greenlets, not threads: handing the turn from one thread to the next (a condition variable each)
cost ~0.4 ms on 2 cores beside torch's threads, ~8 of them an example; a greenlet switch costs
~1 us. At 16 tokens that was 18% of the explain time (bench/README.md, "greenlets").

Nothing here knows about shap: a task is any callable taking a model function.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import greenlet
import numpy as np

from glassworks.explain.predict import check_chunking, chunk_bounds

log = logging.getLogger(__name__)

# forward(rows) -> outputs: rows is a rectangular (B, T) int64 array padded with pad_id, outputs (B, C).
Forward = Callable[[np.ndarray], np.ndarray]
ModelFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class _Request:
    task: int
    rows: np.ndarray  # (N, T) int64: one task's rows of one call have one width, unpadded
    tag: np.ndarray | None = None  # (K,) int64 the forward gets beside each of these rows (tagged batchers)
    out: np.ndarray | None = None
    error: BaseException | None = None  # the forward's error, re-raised in the submitting task


@dataclass
class _Task:
    glet: greenlet.greenlet  # runs _task_main(index, fn, rng_seed); its parent is the driver
    result: Any = None
    error: BaseException | None = None


@dataclass
class BatchStats:
    """What the batcher did: forward passes (`chunk_bounds` chunks) and rows evaluated."""

    flushes: int = 0
    forward_calls: int = 0
    rows: int = 0
    row_counts: list[int] = field(default_factory=list)  # rows per flush
    seconds: float = 0.0  # wall time of run(): what the tasks took together


class RowBatcher:
    """Gathers the id rows of several cooperative tasks and runs them as one padded forward.

    `forward` gets rectangular (B, T) int64 chunks padded with `pad_id` (B <= batch_size and, when
    `max_tokens` is set, B * T <= max_tokens or B = 1) and must return (B, C) outputs; rows are
    sorted by length before chunking, so a chunk is padded only to its own longest row.

    Two options serve models read at each row's last position (a causal LM's next token):
    `same_width_chunks` never puts rows of two widths in one chunk (no padding at all), and
    `tagged` calls ``forward(rows, tags)`` with the (B, K) tags its rows were submitted with
    (``submit(rows, tag=...)``: which token each row's output is about).
    """

    def __init__(self, forward: Forward, pad_id: int, batch_size: int = 512, max_pending_rows: int | None = None,
                 max_tokens: int | None = None, isolate_rng: bool = True, same_width_chunks: bool = False,
                 tagged: bool = False):
        """`isolate_rng`: give every task its own view of numpy's global RNG (saved when it stops,
        restored when it resumes: ~60 us each, at every model call). Tasks that draw from no global
        RNG (our shap explainers have their own RandomState) pass False."""
        check_chunking(batch_size, max_tokens)
        self.isolate_rng = bool(isolate_rng)
        self.same_width_chunks = bool(same_width_chunks)
        self.tagged = bool(tagged)
        self.forward = forward
        self.pad_id = int(pad_id)
        self.batch_size = int(batch_size)
        self.max_tokens = int(max_tokens) if max_tokens is not None else None
        self.max_pending_rows = int(max_pending_rows) if max_pending_rows is not None else 8 * self.batch_size
        if self.max_pending_rows < 1:
            raise ValueError(f"RowBatcher: max_pending_rows must be >= 1, got {max_pending_rows}")
        self.stats = BatchStats()
        self._tasks: list[_Task] = []
        self._pending: list[_Request] = []
        self._pending_rows = 0
        self._current: int | None = None  # the task that runs now; None: the driver
        self._driver: greenlet.greenlet | None = None

    # ---- called from tasks ---------------------------------------------------------------------
    def submit(self, rows: Sequence[Sequence[int]] | np.ndarray, tag: Sequence[int] | None = None) -> np.ndarray:
        """Evaluate `rows` (N, T) for the calling task; returns once the batched forward ran. A
        tagged batcher needs the `tag` (K,) its forward gets beside each of these rows."""
        if self._current is None or self._driver is None:
            raise RuntimeError("RowBatcher.submit: call it from a task that RowBatcher.run runs")
        if (tag is not None) != self.tagged:
            raise ValueError("RowBatcher.submit: a tagged batcher needs a tag with every submit, an untagged one none")
        request = _Request(self._current, np.asarray(rows, dtype=np.int64),
                           None if tag is None else np.asarray(tag, dtype=np.int64).reshape(-1))
        if request.rows.ndim != 2 or len(request.rows) == 0:
            raise ValueError(f"RowBatcher.submit: rows must be a non-empty (N, T) array, got shape "
                             f"{request.rows.shape}")
        rng_state = np.random.get_state() if self.isolate_rng else None
        self._pending.append(request)
        self._pending_rows += len(request.rows)
        self._driver.switch()  # back to the driver, until the forward of these rows ran
        if rng_state is not None:
            np.random.set_state(rng_state)
        if request.error is not None:
            raise request.error
        assert request.out is not None
        return request.out

    def _evaluate(self, requests: list[_Request]) -> None:
        # Rows sorted by width, ties in submit order: a stable sort of the requests, whose rows
        # share a width. One padded block, written a request at a time (not a row at a time:
        # at 64 tokens a flush holds ~8000 rows).
        order = sorted(range(len(requests)), key=lambda k: requests[k].rows.shape[1])
        n_rows = sum(len(req.rows) for req in requests)
        ids = np.full((n_rows, requests[order[-1]].rows.shape[1]), self.pad_id, dtype=np.int64)  # (R, T_max)
        widths = np.empty(n_rows, dtype=np.int64)  # (R,)
        tags = np.empty((n_rows, len(requests[0].tag)), dtype=np.int64) if self.tagged else None  # (R, K)
        starts = [0] * len(requests)
        pos = 0
        for k in order:
            rows = requests[k].rows  # (N, T)
            ids[pos : pos + len(rows), : rows.shape[1]] = rows
            widths[pos : pos + len(rows)] = rows.shape[1]
            if tags is not None:
                tags[pos : pos + len(rows)] = requests[k].tag
            starts[k] = pos
            pos += len(rows)
        outputs = []
        for start, end in self._chunks(widths):  # padded to its widest row
            chunk = np.ascontiguousarray(ids[start:end, : widths[end - 1]])  # (B, T)
            out = np.asarray(self.forward(chunk) if tags is None else self.forward(chunk, tags[start:end]))  # (B, C)
            if out.shape[0] != end - start:
                raise ValueError(f"RowBatcher: forward returned {out.shape[0]} rows for {end - start}")
            outputs.append(out)
            self.stats.forward_calls += 1
        output = np.concatenate(outputs)  # (R, C)
        self.stats.flushes += 1
        self.stats.rows += n_rows
        self.stats.row_counts.append(n_rows)
        for k, req in enumerate(requests):
            req.out = output[starts[k] : starts[k] + len(req.rows)].copy()  # (N, C)

    def _chunks(self, widths: np.ndarray) -> list[tuple[int, int]]:
        """`chunk_bounds` of rows sorted by width; with `same_width_chunks`, of each width apart."""
        if not self.same_width_chunks:
            return chunk_bounds(widths, self.batch_size, self.max_tokens)
        edges = [0, *np.flatnonzero(np.diff(widths)) + 1, len(widths)]
        return [(first + start, first + end) for first, last in zip(edges[:-1], edges[1:])
                for start, end in chunk_bounds(widths[first:last], self.batch_size, self.max_tokens)]

    # ---- driver ------------------------------------------------------------------------------
    def run(self, tasks: Sequence[Callable[[ModelFn], Any]], rng_seed: int | None = None) -> list[Any]:
        """Run every task(model_fn) cooperatively; return their results in order.

        Each task starts with numpy's global RNG seeded with `rng_seed` (when given), as if it
        ran alone after `np.random.seed(rng_seed)`; the caller's RNG state is restored afterwards.
        The first task error is re-raised once every task has stopped.
        """
        if self._tasks:
            raise RuntimeError("RowBatcher.run is not re-entrant")
        caller_state = np.random.get_state()
        start = time.perf_counter()
        self._driver = greenlet.getcurrent()
        self._tasks = [_Task(greenlet.greenlet(partial(self._task_main, i, fn, rng_seed), parent=self._driver))
                       for i, fn in enumerate(tasks)]
        runnable = deque(range(len(tasks)))
        try:
            while runnable or self._pending:
                if runnable:
                    index = runnable.popleft()
                    self._current = index
                    self._tasks[index].glet.switch()  # starts it, or resumes it inside its submit
                    self._current = None
                if self._pending and (not runnable or self._pending_rows >= self.max_pending_rows):
                    runnable.extend(self._flush())
            for task in self._tasks:
                if task.error is not None:
                    raise task.error
            return [task.result for task in self._tasks]
        finally:
            self.stats.seconds += time.perf_counter() - start
            self._tasks, self._pending, self._pending_rows = [], [], 0
            self._current = self._driver = None
            np.random.set_state(caller_state)

    def map(self, fn: Callable[[Any, ModelFn], Any], items: Sequence[Any], concurrency: int) -> list[Any]:
        """fn(item, model_fn) for every item, at most `concurrency` items at once: each of that many
        tasks takes the next item when it finishes one. Results in item order; a task whose item
        raises stops, the others go on, and the first error is re-raised at the end (as `run`)."""
        if concurrency < 1:
            raise ValueError(f"RowBatcher.map: concurrency must be >= 1, got {concurrency}")
        queue = deque(enumerate(items))
        results: list[Any] = [None] * len(items)

        def worker(submit: ModelFn) -> None:
            while queue:  # one task runs at a time, so popping the shared queue is safe
                index, item = queue.popleft()
                results[index] = fn(item, submit)

        self.run([worker] * min(concurrency, len(items)))
        return results

    def _task_main(self, index: int, fn: Callable[[ModelFn], Any], rng_seed: int | None) -> None:
        task = self._tasks[index]
        try:
            if rng_seed is not None:
                np.random.seed(rng_seed)
            task.result = fn(self.submit)
        except BaseException as exc:  # kept for the driver, which re-raises it
            task.error = exc
        # Returning switches back to the driver (the parent).

    def _flush(self) -> list[int]:
        """Run the pending rows; the tasks that wait for them, in submit order."""
        requests, self._pending, self._pending_rows = self._pending, [], 0
        try:
            self._evaluate(requests)
        except Exception as exc:  # every waiting task gets the error, none is left waiting
            for req in requests:
                req.error = exc
        return [req.task for req in requests]
