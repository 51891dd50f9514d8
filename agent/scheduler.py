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

Long jobs can be served in **slices** (the LLM: one reply is seconds of generation, and on one CPU
another session's reply would wait behind all of it). A serve function that reaches a good place to
stop (a reply's clause is out) asks ``waiting(priority)`` whether a job at that priority or better is
queued; if so it ``park``s the job with what it needs to go on later: the queue puts it back, behind
the jobs already there at its priority, and serves them first; the job is not finished, and its next
turn hands the serve function the parked state. Parked jobs that are cancelled are handed to the
queue's ``discard`` in the worker thread (a model's half-done generation must be closed where it ran).

No job waits for ever: with ``age_s`` > 0 a queued job's priority improves by one level for every
``age_s`` it has waited (``effective_priority``), so a stream of new urgent work cannot starve older
work of a lower level.

The loop side (futures, async streams of results) is in agent/engines.py; this module is threads only.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
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
        self.parked: Any = None  # set by ``park``: the serve function's state for the job's next turn
        self._park_priority: int | None = None

    def park(self, state: object, priority: int) -> None:
        """Stop here for now (serve functions only): the queue requeues the job at ``priority`` and
        hands ``state`` back as ``parked`` when it is served again."""
        self.parked = state
        self._park_priority = priority

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


@dataclass(slots=True)
class _Entry:
    priority: int
    seq: int
    job: Any  # a Job of the queue's request type
    queued_at: float = 0.0  # monotonic


def effective_priority(priority: int, waited_s: float, age_s: float) -> int:
    """A queued job's priority after waiting ``waited_s``: one level better per ``age_s`` (0: never),
    never better than 0."""
    if age_s <= 0.0 or priority <= 0:
        return priority
    return max(0, priority - int(waited_s / age_s))


def pick(entries: list[_Entry], now: float, age_s: float) -> int:
    """The index of the entry to serve next: the best effective priority, then first queued (the
    lowest sequence number). Cancelled jobs first: dropping them is free and frees their state."""
    best, best_key = 0, (1, 0, 0)
    for i, entry in enumerate(entries):
        cancelled = 0 if entry.job.cancelled() else 1
        key = (cancelled, effective_priority(entry.priority, now - entry.queued_at, age_s), entry.seq)
        if i == 0 or key < best_key:
            best, best_key = i, key
    return best


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
        age_s: float = 0.0,
        discard: Callable[[Job[Req]], None] | None = None,
    ) -> None:
        if max_batch < 1 or batch_window_s < 0:
            raise ValueError("max_batch >= 1 and batch_window_s >= 0")
        self.name = name
        self._serve = serve
        self._max_batch = max_batch
        self._window_s = batch_window_s
        self._nice = nice  # > 0: the worker thread yields the CPU to the others (Linux: per thread)
        self._age_s = age_s
        self._discard = discard  # closes a parked job's state (worker thread)
        self._queued: list[_Entry] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._running: list[Job[Req]] = []
        # Counters, for tests and /metrics.
        self.served = 0
        self.dropped = 0  # cancelled before they ran
        self.batches = 0
        self.parks = 0  # times a job stopped to let others go first
        self._thread = threading.Thread(target=self._work, name=f"voxloop-{name}", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Jobs queued or running."""
        with self._cond:
            return len(self._queued) + len(self._running)

    def put(self, job: Job[Req]) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError(f"the {self.name} queue is closed")
            self._queue(job, job.priority)
            self._cond.notify()

    def _queue(self, job: Job[Req], priority: int) -> None:
        self._queued.append(_Entry(priority, next(self._seq), job, time.monotonic()))

    def waiting(self, priority: int) -> bool:
        """Whether a job queued now would be served at ``priority`` or better (aging counted):
        a slice-served job that is about to go on at ``priority`` should park instead."""
        now = time.monotonic()
        with self._cond:
            return any(
                not e.job.cancelled()
                and effective_priority(e.priority, now - e.queued_at, self._age_s) <= priority
                for e in self._queued
            )

    def cancel(self, job: Job[Req]) -> None:
        """Cancel ``job``: removed now if queued (it never runs), else it stops at its next chunk.
        A parked job stays queued: the worker discards it (its state belongs to the worker's thread)."""
        job.cancel()
        with self._cond:
            for i, entry in enumerate(self._queued):
                if entry.job is job:
                    if job.parked is not None:
                        self._cond.notify()
                        return
                    del self._queued[i]
                    self.dropped += 1
                    break
            else:
                return
        job.finish(None)

    def close(self) -> None:
        """Stop the worker after the batch it is running; queued jobs are dropped (parked ones
        discarded by the worker as it stops)."""
        with self._cond:
            self._closed = True
            dropped = [e.job for e in self._queued if e.job.parked is None]
            self._queued = [e for e in self._queued if e.job.parked is not None]
            self._cond.notify_all()
        for job in dropped:
            job.cancel()
            job.finish(None)

    # -- the worker thread ------------------------------------------------------------------------
    def _pop(self) -> Job[Req]:
        entry = self._queued.pop(pick(self._queued, time.monotonic(), self._age_s))
        job: Job[Req] = entry.job
        return job

    def _take_batch(self) -> list[Job[Req]] | None:
        with self._cond:
            while not self._queued and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            batch: list[Job[Req]] = [self._pop()]
            deadline = time.monotonic() + self._window_s
            while len(batch) < self._max_batch:
                if not self._queued:
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._cond.wait(left) or self._closed:
                        break
                    continue
                batch.append(self._pop())
            self._running = batch
            return batch

    def _close_parked(self, job: Job[Req]) -> None:
        if job.parked is not None and self._discard is not None:
            try:
                self._discard(job)
            except Exception:  # closing a half-done generation must not stop the worker
                log.exception("%s queue: discarding a parked job failed", self.name)
        job.parked = None

    def _drop(self, job: Job[Req]) -> None:
        """A job that will not run (again): close a parked one's state, then finish it."""
        self._close_parked(job)
        job.finish(None)

    def _drain(self) -> None:
        with self._cond:
            dropped, self._queued = self._queued, []
        for entry in dropped:
            entry.job.cancel()
            self._drop(entry.job)

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
                    self._drop(job)
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
                park, job._park_priority = job._park_priority, None
                if park is not None and error is None and not job.cancelled():
                    with self._cond:  # behind what is already queued at its priority
                        self._queue(job, park)
                        self.parks += 1
                    continue
                self._close_parked(job)  # parked, then cancelled or failed: close its state
                job.finish(error)
        self._drain()
