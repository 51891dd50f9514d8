"""``voxloop bench --front``: what the server's front (HTTP/WebSocket layer, connection, codec, writer)
costs per 20 ms frame, measured from outside over loopback.

Two phases, each with ``sessions`` clients at once for ``seconds``:
- **in**: every client streams 20 ms frames of quiet noise in real time (VAD runs on each, nothing
  is said) and sends a ``ping`` every 100 ms; reported: server CPU per inbound frame, ping round trip.
- **out**: every client asks the agent to say a long line and keeps its microphone open; reported:
  server CPU per outbound frame (TTS included, the same work on any front), the spacing of the frames
  as they arrive (p50/p95/p99 of the gaps; 20 ms is perfect pacing), and ping round trip.
- **turn**: one client, 20 times: ``say`` a short line after a quiet second, then the time until its
  first audible frame arrives, less the server's own ``audio_first_sent`` stamp: what the front adds
  to a turn's first audio, both ways (a TCP socket with Nagle on shows here as ~10 ms).
Server CPU comes from /proc/PID/stat (user + system), so the server must run on this machine.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.audio import AUDIO_PTIME_S, peak_dbfs
from streaming.devtools.client import VoiceClient

RATE = 16000
FRAME = int(RATE * AUDIO_PTIME_S)
LINE = (
    "This is a long line for measuring how the server sends audio, frame after frame, to every client "
    "at once, while each one keeps talking to it and asking for pongs. " * 3
)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class _Tally:
    rtt_ms: list[float] = field(default_factory=list)
    frames_in: int = 0
    gaps_ms: list[float] = field(default_factory=list)
    frames_out: int = 0


async def _client(url: str, seconds: float, speak: bool, tally: _Tally, seed: int) -> None:
    rng = np.random.default_rng(seed)
    async with VoiceClient(url, input_rate=RATE, output_rate=RATE, report_playback=False) as client:
        assert client.ws is not None  # noqa: S101 - connected by __aenter__
        if speak:
            await client.send_json({"type": "say", "text": LINE[:990]})
        start = time.monotonic()
        next_ping, n = start, 0
        last_audio: float | None = None
        seen = sent = 0
        while (now := time.monotonic()) - start < seconds:
            noise = (rng.standard_normal(FRAME) * 30).astype(np.int16)  # about -60 dBFS
            await client.send_bytes(noise.tobytes())
            tally.frames_in += 1
            if now >= next_ping:
                n += 1
                pinged = time.monotonic()
                await client.send_json({"type": "ping", "id": seed * 100000 + n})
                await client.wait_for("pong", timeout_s=5, since=seen, id=seed * 100000 + n)
                tally.rtt_ms.append((time.monotonic() - pinged) * 1000)
                next_ping += 0.1
            for r in client._inbox[seen:]:
                if r.pcm is not None and speak:
                    if last_audio is not None:
                        tally.gaps_ms.append((r.at - last_audio) * 1000)
                    last_audio = r.at
                    tally.frames_out += 1
            seen = len(client._inbox)
            sent += 1
            await asyncio.sleep(max(0.0, start + sent * AUDIO_PTIME_S - time.monotonic()))


def _p(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    a = np.asarray(values)
    return {k: round(float(np.percentile(a, q)), 2) for k, q in (("p50", 50), ("p95", 95), ("p99", 99))}


async def _phase(url: str, pid: int, sessions: int, seconds: float, speak: bool) -> dict[str, Any]:
    tallies = [_Tally() for _ in range(sessions)]
    before = cpu_s(pid)
    await asyncio.gather(*(_client(url, seconds, speak, t, i + 1) for i, t in enumerate(tallies)))
    used = cpu_s(pid) - before
    frames_in = sum(t.frames_in for t in tallies)
    frames_out = sum(t.frames_out for t in tallies)
    return {
        "sessions": sessions,
        "seconds": seconds,
        "frames_in": frames_in,
        "frames_out": frames_out,
        "server_cpu_s": round(used, 3),
        "cpu_us_per_frame": round(used * 1e6 / max(1, frames_in + frames_out), 1),
        "ping_rtt_ms": _p([x for t in tallies for x in t.rtt_ms]),
        "out_frame_gap_ms": _p([x for t in tallies for x in t.gaps_ms]),
    }


def _has_metrics(client: VoiceClient, since: int) -> bool:
    return client.first("turn.metrics", since=since) is not None


async def _first_audio(url: str, turns: int) -> dict[str, Any]:
    lag_ms: list[float] = []
    async with VoiceClient(url, report_playback=False) as client:
        await client.stream(np.zeros(RATE // 2, np.int16))
        for i in range(turns):
            mark = len(client._inbox)
            said = time.monotonic()
            await client.send_json({"type": "say", "text": f"Here is line number {i}, for timing."})
            await client.hold_silence(functools.partial(_has_metrics, client, mark))
            metrics = client.first("turn.metrics", since=mark)
            assert metrics is not None  # noqa: S101 - waited for above
            heard = next(r.at for r in client._inbox[mark:] if r.pcm is not None and peak_dbfs(r.pcm) > -40)
            lag_ms.append((heard - said) * 1000 - metrics["timeline_ms"]["audio_first_sent"])
            await client.stream(np.zeros(RATE, np.int16))  # a quiet second between turns
    return {"turns": turns, "first_audio_lag_ms": _p(lag_ms)}


def run(url: str, pid: int, sessions: int, seconds: float) -> dict[str, Any]:
    return {
        "in": asyncio.run(_phase(url, pid, sessions, seconds, speak=False)),
        "out": asyncio.run(_phase(url, pid, sessions, seconds, speak=True)),
        "turn": asyncio.run(_first_audio(url, 20)),
    }


def table(report: dict[str, Any]) -> str:
    lines = [f"{'phase':6}{'frames':>9}{'CPU us/frame':>14}{'ping p50':>10}{'p95':>8}{'p99':>8}{'gap p50':>9}"
             f"{'p95':>7}{'p99':>7}"]  # fmt: skip
    for name, r in report.items():
        if name == "turn":
            lag = r["first_audio_lag_ms"]
            lines.append(f"turn: a turn's first audible frame, front both ways (ms): p50 {lag.get('p50')} "
                         f"p95 {lag.get('p95')} p99 {lag.get('p99')} over {r['turns']} turns")  # fmt: skip
            continue
        rtt, gap = r["ping_rtt_ms"], r["out_frame_gap_ms"]
        frames = r["frames_in"] + r["frames_out"]
        lines.append(
            f"{name:6}{frames:>9}{r['cpu_us_per_frame']:>14}{rtt.get('p50', 0):>10}{rtt.get('p95', 0):>8}"
            f"{rtt.get('p99', 0):>8}{gap.get('p50', 0):>9}{gap.get('p95', 0):>7}{gap.get('p99', 0):>7}"
        )
    return "\n".join(lines)
