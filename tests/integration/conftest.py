"""A real voxloop server (the CLI, in a subprocess) on an ephemeral 127.0.0.1 port, real models."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

READY = re.compile(r"serving on http://127\.0\.0\.1:(\d+)")


@dataclass
class Server:
    process: subprocess.Popen[str]
    port: int = 0
    log: list[str] = field(default_factory=list)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def stop(self) -> None:
        self.process.terminate()  # our own child, by its pid
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_server(*flags: str, timeout_s: float = 120.0) -> Server:
    cmd = [sys.executable, "-m", "streaming.cli", "serve", "--host", "127.0.0.1", "--port", "0", *flags]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    server = Server(proc)
    ready = threading.Event()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            server.log.append(line.rstrip())
            m = READY.search(line)
            if m:
                server.port = int(m.group(1))
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while not ready.wait(0.2):
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError("voxloop serve did not start:\n" + "\n".join(server.log[-30:]))
    return server


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """The default configuration: the embedded default models, as `voxloop serve` runs them."""
    s = start_server()
    yield s
    s.stop()
