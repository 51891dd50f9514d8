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
