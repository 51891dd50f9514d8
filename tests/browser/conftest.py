"""A real Chromium (Debian's, /usr/bin/chromium) driven by Playwright against a real voxloop server.

Run inside a network namespace that has only loopback (``make test`` does: ``unshare -n``): Chromium's
WebRTC then uses 127.0.0.1 host candidates (``--allow-loopback-in-peer-connection``) and nothing can
reach any other address. The fake microphone plays a wav of speech synthesized by the embedded TTS.
"""

from __future__ import annotations

import os
import socket
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
from playwright.async_api import Browser, async_playwright

from streaming.devtools.bench import LocalServer
from tests.support import utterance

CHROMIUM = Path("/usr/bin/chromium")
RATE = 48000
ARTIFACTS = Path(os.environ.get("VOXLOOP_ARTIFACTS", "build/artifacts"))


def loopback_only() -> bool:
    return [name for _, name in socket.if_nameindex()] == ["lo"]


@pytest.fixture(scope="session", autouse=True)
def _isolated() -> None:
    if not CHROMIUM.exists():
        pytest.fail("Debian chromium is missing: apt-get install chromium chromium-driver (.ci/run does)")
    if not loopback_only():
        pytest.fail(
            "browser tests run in a network namespace with only loopback: "
            "unshare -n sh -c 'ip link set lo up && exec .venv/bin/pytest tests/browser' (make test does)"
        )


@pytest.fixture(scope="session")
def server() -> Iterator[LocalServer]:
    s = LocalServer.start()
    yield s
    s.stop()


def mic_wav(path: Path, parts: list[str | float]) -> Path:
    """A 48 kHz mono wav: strings are spoken by the embedded TTS, numbers are seconds of silence."""
    audio = [np.zeros(int(p * RATE), np.int16) if isinstance(p, float) else utterance(p, RATE) for p in parts]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.concatenate(audio).tobytes())
    return path


def chromium_args(wav: Path, *, allow_mic: bool = True, loopback_webrtc: bool = True) -> list[str]:
    """Flags from ../shared/ENVIRONMENT.md (Playwright adds --headless and a fresh profile folder).
    ``allow_mic``: answer the microphone prompt with yes (else the headless prompt says no);
    ``loopback_webrtc``: let WebRTC use 127.0.0.1 (else ICE finds no path in the namespace)."""
    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop",
        "--autoplay-policy=no-user-gesture-required",
    ]
    if allow_mic:
        args.append("--use-fake-ui-for-media-stream")
    if loopback_webrtc:
        args.append("--allow-loopback-in-peer-connection")
    return args


@pytest.fixture
async def launch() -> AsyncIterator[object]:
    """``await launch(wav, **flags)`` -> a Chromium whose microphone plays ``wav`` (closed after the
    test); ``flags`` as ``chromium_args`` takes them."""
    browsers: list[Browser] = []
    async with async_playwright() as pw:

        async def start(wav: Path, **flags: bool) -> Browser:
            browser = await pw.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=chromium_args(wav, **flags)
            )
            browsers.append(browser)
            return browser

        yield start
        for b in browsers:
            await b.close()
