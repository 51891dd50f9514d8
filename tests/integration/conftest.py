"""A real voxloop server (the CLI, in a subprocess) on an ephemeral 127.0.0.1 port, real models."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from streaming.devtools.bench import LocalServer

Server = LocalServer


def start_server(*flags: str) -> LocalServer:
    return LocalServer.start(*flags)


@pytest.fixture(scope="session")
def server() -> Iterator[LocalServer]:
    """The default configuration: the embedded default models, as `voxloop serve` runs them."""
    s = LocalServer.start()
    yield s
    s.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test against a real server shows the server's own log from around the failure
    (what it heard, decided and said), in the report: a CI failure can be read without a rerun."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when != "call" or not report.failed:
        return
    for name, value in getattr(item, "funcargs", {}).items():
        if isinstance(value, LocalServer):
            report.sections.append((f"server log ({name}, last 150 lines)", "\n".join(value.log[-150:])))
