"""Request micro-batching for the grader: concurrent callers' photos run as one model batch.

Callers submit preprocessed tensors from any thread and block until their own rows come back;
one worker thread gathers up to `max_batch` rows (waiting at most `wait_ms` after the first) and
runs the model once. `max_batch=1` disables it: the model runs in the caller's thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from inspection.errors import ServiceUnavailable

log = logging.getLogger(__name__)

# The model function: a [N, ...] float32 batch in, one array per output (each [N, ...]) out.
BatchRunner = Callable[[np.ndarray], Sequence[np.ndarray]]


@dataclass
class _Pending:
    """Rows one caller submitted, and where their outputs go."""

    rows: np.ndarray
    future: Future[list[np.ndarray]] = field(default_factory=Future)


@dataclass
class BatcherStats:
    """Counters for logs and benchmarks: how full the batches ran."""

    batches: int = 0
    rows: int = 0
    largest_batch: int = 0

    @property
    def mean_batch(self) -> float:
        """Average rows per model call."""
        return self.rows / self.batches if self.batches else 0.0


class GraderBatcher:
    """Thread-safe micro-batcher in front of a model's batch function.

    Example:
        >>> batcher = GraderBatcher(run_batch=lambda x: [x.sum(axis=(1, 2, 3))], max_batch=8)
        >>> (sums,) = batcher.submit(np.ones((2, 3, 4, 4), np.float32))
        >>> sums.tolist()
        [48.0, 48.0]
        >>> batcher.close()
    """

    def __init__(
        self,
        *,
        run_batch: BatchRunner,
        max_batch: int = 8,
        wait_ms: float = 2.0,
        name: str = "grader",
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if wait_ms < 0:
            raise ValueError("wait_ms must not be negative")
        self._run_batch = run_batch
        self.max_batch = max_batch
        self.wait_seconds = wait_ms / 1000.0
        self.stats = BatcherStats()
        self._stats_lock = threading.Lock()
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._closed = threading.Event()
        self._worker: threading.Thread | None = None
        if self.enabled:
            self._worker = threading.Thread(target=self._serve, name=f"{name}-batcher", daemon=True)
            self._worker.start()

    @property
    def enabled(self) -> bool:
        """False when max_batch is 1: every submit runs the model directly."""
        return self.max_batch > 1

    def submit(self, rows: np.ndarray) -> list[np.ndarray]:
        """Runs `rows` ([k, ...], k >= 1) through the model; returns each output's k rows.

        Blocks until the batch holding these rows has run; a model error is raised here, in
        every caller whose rows were in the failed batch.
        """
        if rows.ndim < 1 or rows.shape[0] < 1:
            raise ValueError("submit needs at least one row")
        if self._closed.is_set():
            raise ServiceUnavailable(
                "the grader is shutting down", hint="retry the request in a few seconds"
            )
        if not self.enabled:
            outputs = [np.asarray(out) for out in self._run_batch(rows)]
            self._count(rows.shape[0])
            return outputs
        pending = _Pending(rows=rows)
        self._queue.put(pending)
        return pending.future.result()

    def close(self, timeout: float = 5.0) -> None:
        """Stops the worker after the queued batches ran; later submits get 503."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(timeout)
        # Anything still queued (worker gone or timed out) must not leave a caller hanging.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None and not item.future.done():
                item.future.set_exception(
                    ServiceUnavailable(
                        "the grader shut down before this photo ran",
                        hint="retry the request in a few seconds",
                    )
                )

    def _count(self, rows: int) -> None:
        with self._stats_lock:
            self.stats.batches += 1
            self.stats.rows += rows
            self.stats.largest_batch = max(self.stats.largest_batch, rows)

    def _gather(self, first: _Pending) -> tuple[list[_Pending], _Pending | None, bool]:
        """Collects callers after `first` until max_batch rows or the wait is over.

        Returns the group, a caller that did not fit (it starts the next batch) and whether
        the stop sentinel was seen.
        """
        group, rows = [first], first.rows.shape[0]
        deadline = time.monotonic() + self.wait_seconds
        while rows < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                item = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if item is None:
                return group, None, True
            if rows + item.rows.shape[0] > self.max_batch:
                return group, item, False
            group.append(item)
            rows += item.rows.shape[0]
        return group, None, False

    def _serve(self) -> None:
        carry: _Pending | None = None
        stopping = False
        while True:
            if carry is not None:
                first, carry = carry, None
            elif stopping:
                # Drain what was queued before close(); never wait for more.
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    return
                if item is None:
                    continue
                first = item
            else:
                item = self._queue.get()
                if item is None:
                    stopping = True
                    continue
                first = item
            group, carry, saw_stop = self._gather(first)
            stopping = stopping or saw_stop
            self._run(group)

    def _run(self, group: list[_Pending]) -> None:
        sizes = [p.rows.shape[0] for p in group]
        try:
            batch = group[0].rows if len(group) == 1 else np.concatenate([p.rows for p in group])
            outputs = [np.asarray(out) for out in self._run_batch(batch)]
            for out in outputs:
                if out.shape[0] != batch.shape[0]:
                    raise RuntimeError(
                        f"model returned {out.shape[0]} rows for a batch of {batch.shape[0]}"
                    )
        except BaseException as exc:  # handed to every waiting caller, so none hangs
            log.exception("grader batch of %d rows failed", sum(sizes))
            for pending in group:
                pending.future.set_exception(exc)
            return
        self._count(batch.shape[0])
        start = 0
        for pending, size in zip(group, sizes, strict=True):
            pending.future.set_result([out[start : start + size] for out in outputs])
            start += size
