"""Fixtures for every test: no test may leave a task running behind it, whatever the task's name."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

pytest_plugins = ["pytester"]  # tests/unit/test_leaks.py runs a leaking test to see this fixture fail


async def leaked_tasks(settle_rounds: int = 5) -> list[asyncio.Task[object]]:
    """Tasks of the running loop, other than the caller, still pending after a few loop rounds (a
    task cancelled at the very end of a test gets those rounds to finish)."""
    me = asyncio.current_task()
    for _ in range(settle_rounds):
        pending = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        if not pending:
            return []
        await asyncio.sleep(0)
    return pending


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fail the test if any task is still pending once it (and its fixtures) are done; the leaked
    tasks are then cancelled and awaited, so the next test starts clean."""
    yield
    leaked = await leaked_tasks()
    if leaked:
        names = ", ".join(sorted(f"{t.get_name()} ({t.get_coro()!r})" for t in leaked))
        for task in leaked:
            task.cancel()
        await asyncio.gather(*leaked, return_exceptions=True)
        pytest.fail(f"the test leaked {len(leaked)} task(s): {names}", pytrace=False)
