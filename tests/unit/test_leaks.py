"""The leak fixture of tests/conftest.py fails a test that leaves a task behind, whatever its name."""

from __future__ import annotations

from pathlib import Path

import pytest

LEAKY = """
import asyncio

async def test_leaks_a_task() -> None:
    asyncio.get_running_loop().create_task(asyncio.sleep(60), name="innocent-looking")

async def test_cleans_up() -> None:
    task = asyncio.create_task(asyncio.sleep(60))
    task.cancel()

def test_sync() -> None:
    pass
"""


def test_a_leaked_task_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makeconftest((Path(__file__).parents[1] / "conftest.py").read_text())
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_leaky=LEAKY)
    result = pytester.runpytest("-p", "no:cacheprovider")
    # The leaking test's body passed; its teardown is an error, and the run fails. The others pass.
    result.assert_outcomes(passed=3, errors=1)
    assert result.ret != 0
    result.stdout.fnmatch_lines(
        ["*ERROR at teardown of test_leaks_a_task*", "*the test leaked 1 task(s): innocent-looking*"]
    )
