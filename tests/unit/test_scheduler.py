"""The role queue's order without any model: priorities, aging, slices that park and resume, and
parked work that is cancelled or left behind by a closing queue."""

from __future__ import annotations

import threading

import pytest

from agent.scheduler import Job, RoleQueue, effective_priority


@pytest.mark.parametrize(
    ("priority", "waited_s", "age_s", "expected"),
    [
        (2, 0.0, 1.0, 2),
        (2, 0.99, 1.0, 2),
        (2, 1.0, 1.0, 1),
        (2, 2.5, 1.0, 0),
        (2, 60.0, 1.0, 0),  # never better than the most urgent level
        (0, 60.0, 1.0, 0),
        (3, 60.0, 0.0, 3),  # aging off
    ],
)
def test_a_waiting_job_moves_up_one_level_per_aging_step(
    priority: int, waited_s: float, age_s: float, expected: int
) -> None:
    assert effective_priority(priority, waited_s, age_s) == expected


class Slices:
    """A serve function: each job is ``n`` slices ("tag:n"); after each slice but the last it
    parks if anything at its priority or better waits. Records slices in the order served."""

    def __init__(self, slice_s: float = 0.0) -> None:
        self.slice_s = slice_s
        self.queue: RoleQueue[str] | None = None
        self.order: list[str] = []
        self.discarded: list[str] = []
        self.gate = threading.Event()
        self.done = threading.Event()

    def serve(self, jobs: list[Job[str]]) -> None:
        assert self.queue is not None
        for job in jobs:
            self.gate.wait(5)
            tag, n = job.request.split(":")
            k = job.parked or 0
            job.parked = None
            while k < int(n):
                threading.Event().wait(self.slice_s)
                self.order.append(f"{tag}{k}")
                k += 1
                if k < int(n) and self.queue.waiting(1):
                    job.park(k, 1)
                    return
            job.deliver(tag)

    def discard(self, job: Job[str]) -> None:
        self.discarded.append(f"{job.request}@{job.parked}")


def _job(request: str, priority: int, finished: list[str]) -> Job[str]:
    return Job(request, priority, lambda item: None, lambda error: finished.append(request))


def test_a_parked_job_goes_behind_those_waiting_and_finishes_once() -> None:
    s = Slices()
    s.queue = RoleQueue("slices", s.serve, discard=s.discard)
    finished: list[str] = []
    try:
        s.queue.put(_job("a:3", 0, finished))
        s.queue.put(_job("b:2", 0, finished))
        s.queue.put(_job("c:1", 1, finished))
        s.gate.set()
        for _ in range(200):
            if len(finished) == 3:
                break
            threading.Event().wait(0.01)
        # a (urgent) is served first; it parks at level 1 behind b (urgent), then c (queued before it).
        assert s.order == ["a0", "b0", "c0", "a1", "b1", "a2"]
        assert finished == ["c:1", "b:2", "a:3"]  # each finished once, when all its slices were done
        assert s.queue.parks == 3 and not s.discarded
    finally:
        s.queue.close()


def test_a_cancelled_or_abandoned_parked_job_is_discarded_in_the_worker() -> None:
    s = Slices(slice_s=0.02)
    s.queue = RoleQueue("slices", s.serve, discard=s.discard)
    finished: list[str] = []
    a, b = _job("a:5", 0, finished), _job("b:5", 0, finished)
    s.queue.put(a)
    s.queue.put(b)
    s.gate.set()
    for _ in range(200):
        if s.queue.parks >= 2:
            break
        threading.Event().wait(0.005)
    s.queue.cancel(a)  # parked: the worker discards it
    s.queue.close()  # b, parked or running, is discarded when the worker stops
    for _ in range(200):
        if len(finished) == 2:
            break
        threading.Event().wait(0.01)
    assert sorted(finished) == ["a:5", "b:5"]
    assert any(d.startswith("a:5@") for d in s.discarded)
