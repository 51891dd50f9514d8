"""The connection's writer on a real loop with a socket that records what it is given (or stalls)."""

from __future__ import annotations

import asyncio

from streaming.connection import Outgoing, Wire, Writer


class RecordingSocket:
    def __init__(self) -> None:
        self.sent: list[Wire] = []
        self.closed: tuple[int, str] | None = None
        self.gate = asyncio.Event()  # sends wait for it: a client that is not reading
        self.gate.set()

    async def receive(self) -> Wire | None:
        return None

    async def send(self, message: Wire) -> None:
        await self.gate.wait()
        self.sent.append(message)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def audio(i: int, size: int = 1000) -> Outgoing:
    return Outgoing(bytes([i % 256]) * size, audio=True)


async def _drain(socket: RecordingSocket, writer: Writer) -> None:
    task = asyncio.create_task(writer.run())
    socket.gate.set()
    await asyncio.wait([task], timeout=2)
    if not task.done():
        task.cancel()
        await asyncio.wait([task])


async def test_order_is_kept_and_close_comes_after_what_was_queued() -> None:
    socket = RecordingSocket()
    writer = Writer(socket, high_water_bytes=10_000, low_water_bytes=2_500)
    writer.put(Outgoing('{"type":"a"}'))
    writer.put(audio(1))
    writer.put(Outgoing('{"type":"b"}'))
    writer.close(1011, "session failed")
    writer.put(Outgoing('{"type":"after close"}'))  # refused: the socket is closing
    await _drain(socket, writer)
    assert socket.sent == ['{"type":"a"}', audio(1).message, '{"type":"b"}']
    assert socket.closed == (1011, "session failed")


async def test_a_client_that_falls_behind_loses_old_audio_never_control() -> None:
    socket = RecordingSocket()
    socket.gate.clear()
    writer = Writer(socket, high_water_bytes=10_000, low_water_bytes=2_500)
    for i in range(30):  # 30 kB of audio, a control message every 10 frames
        writer.put(audio(i))
        if i % 10 == 9:
            writer.put(Outgoing(f'{{"n":{i}}}'))
    writer.close(1000, "")
    await _drain(socket, writer)
    controls = [m for m in socket.sent if isinstance(m, str)]
    kept = [m[0] for m in socket.sent if isinstance(m, bytes)]
    assert controls == ['{"n":9}', '{"n":19}', '{"n":29}']
    assert writer.dropped_audio == 30 - len(kept) > 0 and len(kept) * 1000 <= 10_000
    assert kept == sorted(kept) and kept[-1] == 29  # the newest audio stays, in order


async def test_clear_drops_queued_audio_and_keeps_the_clear_itself() -> None:
    socket = RecordingSocket()
    socket.gate.clear()
    writer = Writer(socket, high_water_bytes=100_000, low_water_bytes=25_000)
    for i in range(5):
        writer.put(audio(i))
    writer.clear_audio()
    writer.put(Outgoing('{"type":"audio.clear"}'))
    writer.put(audio(9))
    writer.close(1000, "")
    await _drain(socket, writer)
    assert socket.sent == ['{"type":"audio.clear"}', audio(9).message]


async def test_a_client_that_reads_nothing_is_closed_not_buffered_forever() -> None:
    socket = RecordingSocket()
    socket.gate.clear()
    writer = Writer(socket, high_water_bytes=1_000, low_water_bytes=250)
    for i in range(200):
        writer.put(Outgoing('{"pad":"' + "x" * 90 + f'","n":{i}}}'))  # control only: never shed
    assert writer.overflowed
    await _drain(socket, writer)
    assert socket.closed == (1008, "client not reading") and socket.sent == []
