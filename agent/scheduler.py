"""Per-role request queues: priorities, a batching window, cancelled work dropped before it runs.

Every model role (VAD, ASR, LLM, TTS) has one ``RoleQueue`` and one worker thread, shared by every
session of the process: a model that is not thread-safe (llama.cpp) is never entered twice, thread
pools do not multiply on a small CPU, and the event loop never blocks on a model.

A request is a ``Job``: lower ``priority`` first, first come first served within a priority (a final
ASR pass before an overlap pass before a partial one). Cancelling a job that is still queued removes
it: it never runs. A job that is running sees ``cancelled`` become true and stops at its next token or
chunk (the role's serve function checks it). The worker takes up to ``max_batch`` jobs at once,
waiting at most ``batch_window_s`` for more after the first (0: never wait, a batch of what is
already queued, which on one CPU is a batch of one); the serve function gets the whole batch.

The loop side (futures, async streams of results) is in agent/engines.py; this module is threads only.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

Req = TypeVar("Req")


class Job(Generic[Req]):
    """One request on its way through a role's queue. ``deliver`` and ``finish`` are called from the
    worker thread; they hand results to whoever submitted the job (thread-safe callbacks)."""

    def __init__(
        self,
        request: Req,
        priority: int,
        deliver: Callable[[object], None],
        finish: Callable[[BaseException | None], None],
    ) -> None:
        self.request = request
        self.priority = priority
        self._deliver = deliver
        self._finish = finish
        self._cancelled = threading.Event()
        self._finished = False
        self.started_at: float | None = None  # monotonic, when the worker took it

    def cancelled(self) -> bool:
        """Whether the job was cancelled (a backend polls this between tokens or chunks)."""
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Mark the job cancelled (its queue also removes it if still queued: ``RoleQueue.cancel``)."""
        self._cancelled.set()

    def deliver(self, item: object) -> None:
        """A result (the whole result, or the next chunk of a streamed one). Dropped once cancelled."""
        if not self.cancelled():
            self._deliver(item)

    def finish(self, error: BaseException | None = None) -> None:
        """No more results; ``error`` if the work failed. Only the first call counts."""
        if not self._finished:
            self._finished = True
            self._finish(error)


@dataclass(order=True)
class _Entry:
    priority: int
    seq: int
    job: Any = field(compare=False)  # a Job of the queue's request type


class RoleQueue(Generic[Req]):
    """One role's queue and its worker thread. ``serve(jobs)`` runs the model on a batch; it must
    call ``deliver`` for each job's results; the queue calls ``finish`` for it afterwards (with the
    exception if ``serve`` raised)."""

    def __init__(
        self,
        name: str,
        serve: Callable[[list[Job[Req]]], None],
        *,
        max_batch: int = 1,
        batch_window_s: float = 0.0,
        nice: int = 0,
    ) -> None:
        if max_batch < 1 or batch_window_s < 0:
            raise ValueError("max_batch >= 1 and batch_window_s >= 0")
        self.name = name
        self._serve = serve
        self._max_batch = max_batch
        self._window_s = batch_window_s
        self._nice = nice  # > 0: the worker thread yields the CPU to the others (Linux: per thread)
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._running: list[Job[Req]] = []
        # Counters, for tests and /metrics.
        self.served = 0
        self.dropped = 0  # cancelled before they ran
        self.batches = 0
        self._thread = threading.Thread(target=self._work, name=f"voxloop-{name}", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Jobs queued or running."""
        with self._cond:
            return len(self._heap) + len(self._running)

    def put(self, job: Job[Req]) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError(f"the {self.name} queue is closed")
            heapq.heappush(self._heap, _Entry(job.priority, next(self._seq), job))
            self._cond.notify()

    def cancel(self, job: Job[Req]) -> None:
        """Cancel ``job``: removed now if queued (it never runs), else it stops at its next chunk."""
        job.cancel()
        with self._cond:
            for i, entry in enumerate(self._heap):
                if entry.job is job:
                    self._heap[i] = self._heap[-1]
                    self._heap.pop()
                    heapq.heapify(self._heap)
                    self.dropped += 1
                    break
            else:
                return
        job.finish(None)

    def close(self) -> None:
        """Stop the worker after the batch it is running; queued jobs are dropped."""
        with self._cond:
            self._closed = True
            dropped, self._heap = self._heap, []
            self._cond.notify_all()
        for entry in dropped:
            entry.job.cancel()
            entry.job.finish(None)

    # -- the worker thread ------------------------------------------------------------------------
    def _take_batch(self) -> list[Job[Req]] | None:
        with self._cond:
            while not self._heap and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            batch: list[Job[Req]] = [heapq.heappop(self._heap).job]
            deadline = time.monotonic() + self._window_s
            while len(batch) < self._max_batch:
                if not self._heap:
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._cond.wait(left) or self._closed:
                        break
                    continue
                batch.append(heapq.heappop(self._heap).job)
            self._running = batch
            return batch

    def _work(self) -> None:
        if self._nice > 0:
            try:  # on Linux a thread is a task of its own: this lowers only this worker
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._nice)
            except (AttributeError, OSError) as e:  # another OS: the worker runs at normal priority
                log.info("%s queue: cannot lower the worker's priority: %r", self.name, e)
        while (taken := self._take_batch()) is not None:
            batch = [job for job in taken if not job.cancelled()]  # cancelled while being taken
            for job in taken:
                if job.cancelled():
                    job.finish(None)
            if not batch:
                with self._cond:
                    self._running = []
                    self.dropped += len(taken)
                continue
            now = time.monotonic()
            for job in batch:
                job.started_at = now
            error: BaseException | None = None
            try:
                self._serve(batch)
            except Exception as e:  # the model failed: every job of the batch gets the error
                error = e
            finally:
                with self._cond:
                    self._running = []
                    self.served += len(batch)
                    self.batches += 1
            for job in batch:
                job.finish(error)
