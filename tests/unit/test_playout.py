"""PacedOutput's bookkeeping of what the listener has played, on a clock the test moves."""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np
import pytest

from agent.audio import AudioChunk
from streaming.playout import PacedOutput


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def _sent(output: PacedOutput, turn_id: int, seconds: float) -> None:
    """Push ``seconds`` of audio and let the pacing task send all of it (the lead covers it all)."""
    output.push(turn_id, AudioChunk(np.full(int(seconds * 16000), 1000, np.int16), 16000))
    output.end_turn(turn_id)
    async with asyncio.timeout(2):
        assert await output.wait_done(turn_id) == pytest.approx(seconds)


@contextlib.asynccontextmanager
async def _output(clock: Clock):  # type: ignore[no-untyped-def]
    frames: list[bytes] = []
    # A lead longer than the audio: every frame is due at once, whatever the (frozen) clock says.
    output = PacedOutput(16000, frames.append, lead_s=10.0, clock=clock)
    task = asyncio.create_task(output.run())
    try:
        yield output
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_without_reports_the_position_is_the_time_since_the_first_frame_less_pauses() -> None:
    clock = Clock()
    async with _output(clock) as out:
        await _sent(out, 1, 1.0)
        assert out.played_s(1) == 0.0
        clock.now += 0.3
        assert out.played_s(1) == pytest.approx(0.3)
        out.pause()
        clock.now += 0.5
        assert out.played_s(1) == pytest.approx(0.3)
        out.resume()
        clock.now += 0.1
        assert out.played_s(1) == pytest.approx(0.4)
        clock.now += 5.0
        assert out.played_s(1) == pytest.approx(1.0)  # never past what was sent


async def test_a_report_from_the_listener_wins_and_moves_on_with_the_clock() -> None:
    clock = Clock()
    async with _output(clock) as out:
        await _sent(out, 1, 1.0)
        clock.now += 0.3
        out.report_played(1, 0.1)  # the listener's buffer is deeper than the server thinks
        assert out.played_s(1) == pytest.approx(0.1)
        clock.now += 0.2
        assert out.played_s(1) == pytest.approx(0.3)
        out.pause()
        clock.now += 0.4
        assert out.played_s(1) == pytest.approx(0.3)  # paused time is not playing time
        out.resume()
        out.report_played(1, 5.0)
        assert out.played_s(1) == pytest.approx(1.0)  # a report past what was sent is capped
        out.report_played(7, 1.0)  # a turn never sent: ignored
        assert out.played_s(7) == 0.0
