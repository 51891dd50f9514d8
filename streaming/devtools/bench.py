"""``voxloop bench``: voice-to-voice latency measured the way ../shared/LATENCY.md defines it.

Clients speak a fixed corpus (synthesized by the embedded TTS, trailing silence trimmed so the last
speech sample is known, then real-time silence) to a running server (``--url``) or to one bench starts
itself with the settings flags given to bench. Some utterances have inner pauses of 300-600 ms, where
an agent that answers too early would start talking before the user finished (a premature turn).
Per turn: the client-measured v2v latency, premature or not, and the server's per-stage timeline.
Output: a table of p50/p95/p99, ``bench.json`` (conditions and every turn) and ``bench.png``.

Transports plug in through ``TRANSPORTS``: a function that opens a client session on a URL and
returns an object with ``turn(pcm) -> TurnResult`` and ``stream(pcm)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from agent.audio import Pcm, float_to_pcm
from agent.config import Settings, flat_fields
from agent.events import STAGES
from agent.tts.base import Tts
from streaming.codecs import resample
from streaming.devtools.client import TurnResult, VoiceClient

log = logging.getLogger(__name__)

AUDIBLE = 328  # -40 dBFS in int16
READY = re.compile(r"serving on http://127\.0\.0\.1:(\d+)")


@dataclass(frozen=True, slots=True)
class Utterance:
    """What a user says: parts spoken with the given silences between them."""

    parts: tuple[str, ...]
    pauses_s: tuple[float, ...] = ()

    @property
    def text(self) -> str:
        return " ".join(self.parts)


CORPUS = (
    Utterance(("What is the capital of France?",)),
    Utterance(("How many legs does a spider have?",)),
    Utterance(("Can you tell me about", "the tallest mountain in the world?"), (0.5,)),
    Utterance(("Can you name a fruit that is yellow?",)),
    Utterance(("What is two plus three?",)),
    Utterance(("I would like to know", "what the largest ocean on Earth is."), (0.4,)),
    Utterance(("Tell me one thing about the moon.",)),
    Utterance(("Which animal is known as the king of the jungle?",)),
    Utterance(("What is the name of", "the closest star to Earth?"), (0.6,)),
    Utterance(("What color do you get when you mix blue and yellow?",)),
    Utterance(("How many days are there in a week?",)),
    Utterance(("My favourite season is summer and", "what is yours?"), (0.3,)),
    Utterance(("What do bees make?",)),
    Utterance(("Is the sun a star?",)),
    # A phrase that is itself a finished sentence, then more: the comma says the speaker goes on.
    Utterance(("Tell me a joke,", "about a cat."), (0.4,)),
    Utterance(("Name a planet,", "one that has rings."), (0.5,)),
)

# Hesitations a turn must not end in (600-1000 ms): a trailing conjunction or preposition, digits or
# letters read out one by one, a short sentence the speaker goes on from. ``--corpus hesitation``.
HESITATION = (
    Utterance(("I would like a pizza with cheese and", "some olives on top."), (0.8,)),
    Utterance(("I am calling because", "my parcel did not arrive."), (0.9,)),
    Utterance(("Can I pay with", "a credit card?"), (0.7,)),
    Utterance(("Please meet me at", "the train station."), (1.0,)),
    Utterance(("It was raining so", "what should we do at home?"), (0.6,)),
    Utterance(("My number is five five five,", "one two three four."), (0.8,)),
    Utterance(("The order number is four seven,", "two nine one."), (0.9,)),
    Utterance(("My name is spelled J, O,", "H, N."), (0.7,)),
    Utterance(("Call me a taxi.", "To the central station, please."), (0.8,)),
    Utterance(("I need a table.", "For four people at eight."), (0.7,)),
    Utterance(("Book a flight.", "To Paris on Monday."), (0.9,)),
    Utterance(("I have a question.", "How far away is the moon?"), (0.6,)),
)
CORPORA = {"default": CORPUS, "hesitation": HESITATION}


def speech(tts: Tts, text: str, rate: int = 16000) -> Pcm:
    """``text`` spoken by ``tts`` at ``rate``; ends exactly on the last sample above -40 dBFS and
    starts 100 ms before the first (as a person starts talking into an open microphone)."""
    pcm = resample(float_to_pcm(tts.synthesize(text)), tts.sample_rate, rate)
    loud = np.nonzero(np.abs(pcm.astype(np.int32)) > AUDIBLE)[0]
    start = max(0, int(loud[0]) - rate // 10)
    return pcm[start : int(loud[-1]) + 1]


def render(tts: Tts, u: Utterance, rate: int = 16000) -> Pcm:
    """An utterance's audio: its parts with their pauses between; its last sample is speech.
    A pause is the exact gap from the last loud sample of one part to the first of the next."""
    pieces: list[Pcm] = []
    for i, part in enumerate(u.parts):
        pcm = speech(tts, part, rate)
        if i:
            lead = int(np.nonzero(np.abs(pcm.astype(np.int32)) > AUDIBLE)[0][0])
            pieces.append(np.zeros(max(0, int(u.pauses_s[i - 1] * rate) - lead), np.int16))
        pieces.append(pcm)
    return np.concatenate(pieces)


# -- transports -------------------------------------------------------------------------------------
class BenchClient(Protocol):
    async def stream(self, pcm: Pcm) -> float: ...

    async def turn(self, speech: Pcm, *, timeout_s: float = 30.0) -> TurnResult: ...


Connect = Callable[[str, int], contextlib.AbstractAsyncContextManager[BenchClient]]


@contextlib.asynccontextmanager
async def _websocket(url: str, rate: int) -> AsyncIterator[BenchClient]:
    async with VoiceClient(url, input_rate=rate) as client:
        yield client


@contextlib.asynccontextmanager
async def _webrtc(url: str, rate: int) -> AsyncIterator[BenchClient]:
    async with VoiceClient(url, input_rate=rate, audio="webrtc") as client:
        yield client


@contextlib.asynccontextmanager
async def _twilio(url: str, rate: int) -> AsyncIterator[BenchClient]:
    from streaming.devtools.phonesim import PhoneBenchClient, PhoneCall

    async with PhoneCall(url.rsplit("/", 1)[0] + "/twilio/media") as call:
        yield PhoneBenchClient(call, rate)


@contextlib.asynccontextmanager
async def _realtime(url: str, rate: int) -> AsyncIterator[BenchClient]:
    from streaming.devtools.realtime_client import RealtimeBenchClient

    async with RealtimeBenchClient(url.rsplit("/", 1)[0] + "/v1/realtime?model=voxloop", rate) as client:
        yield client


# The event that starts a reply, per protocol: voxloop's, the Realtime API's.
REPLY_STARTS = ("response.started", "response.created")

TRANSPORTS: dict[str, Connect] = {
    "websocket": _websocket,
    "webrtc": _webrtc,
    "twilio": _twilio,
    "realtime": _realtime,
}


# -- a server of its own ----------------------------------------------------------------------------
@dataclass
class LocalServer:
    """``voxloop serve`` in a subprocess on an ephemeral 127.0.0.1 port (ended by its pid)."""

    process: subprocess.Popen[str]
    port: int = 0
    log: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, *flags: str, timeout_s: float = 180.0) -> LocalServer:
        cmd = [sys.executable, "-m", "streaming.cli", "serve", "--host", "127.0.0.1", "--port", "0", *flags]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
        server = cls(proc)
        ready = threading.Event()

        def pump() -> None:
            assert proc.stderr is not None  # noqa: S101 - opened with PIPE above
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

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def health(ws_url: str) -> dict[str, Any]:
    """The server's /healthz (its RSS figures), from its WebSocket URL."""
    http = ws_url.replace("ws://", "http://", 1).rsplit("/", 1)[0] + "/healthz"
    with urllib.request.urlopen(http, timeout=5) as r:
        return json.load(r)  # type: ignore[no-any-return]


# -- running ----------------------------------------------------------------------------------------
@dataclass
class Plan:
    url: str
    turns: int
    concurrency: int
    transport: str
    rate: int = 16000
    corpus: tuple[Utterance, ...] = CORPUS


async def run_client(
    plan: Plan, client_id: int, audio: dict[Utterance, Pcm], tick: Callable[[], None]
) -> list[dict[str, Any]]:
    """One client: a warm-up turn (not reported, as LATENCY.md says), then ``plan.turns`` turns."""
    rows: list[dict[str, Any]] = []
    await asyncio.sleep(client_id * 0.7)  # stagger clients, so they do not speak in lockstep
    async with TRANSPORTS[plan.transport](plan.url, plan.rate) as client:
        await client.stream(np.zeros(plan.rate // 2, np.int16))
        for i in range(plan.turns + 1):
            u = plan.corpus[(i + client_id * 3) % len(plan.corpus)]
            result = await client.turn(audio[u], timeout_s=90.0)  # a long reply plays ~25 s
            await client.stream(np.zeros(plan.rate * 3 // 10, np.int16))  # the user takes a breath
            if i == 0:
                continue
            rows.append(
                {
                    "client": client_id,
                    "turn": i,
                    "utterance": u.text,
                    "inner_pauses_s": list(u.pauses_s),
                    "transcript": result.transcript,
                    "reply": result.reply_text,
                    "v2v_ms": None if result.v2v_s is None else round(result.v2v_s * 1000.0, 1),
                    "premature": result.premature,
                    "replies": sum(1 for e in result.events if e["type"] in REPLY_STARTS),
                    "stalls_ms": [round(g * 1000.0, 1) for g in result.stalls_s],
                    "timeline_ms": result.metrics.get("timeline_ms", {}),
                    "durations_ms": result.metrics.get("durations_ms", {}),
                    "endpointing": result.metrics.get("endpointing", {}),
                }
            )
            tick()
    return rows


async def run(plan: Plan, tts: Tts) -> list[dict[str, Any]]:
    from tqdm import tqdm

    audio = {u: render(tts, u, plan.rate) for u in plan.corpus}
    with tqdm(total=plan.turns * plan.concurrency, desc="turns", unit="turn", file=sys.stderr) as bar:
        per_client = await asyncio.gather(
            *(run_client(plan, c, audio, lambda: bar.update(1)) for c in range(plan.concurrency))
        )
    return [row for rows in per_client for row in rows]


async def extra_sessions(url: str, n: int) -> float:
    """Open ``n`` more sessions at once, each speaking one line; return the server's RSS (MB) while
    they are all still connected: what sessions beyond the first cost."""
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(VoiceClient(url)) for _ in range(n)]
        for c in clients:
            await c.send_json({"type": "say", "text": "This session is here to be counted."})
        for c in clients:
            await c.wait_for("response.done", timeout_s=60)
        rss: float = (await asyncio.to_thread(health, url))["rss_mb"]
        return rss


# -- reporting --------------------------------------------------------------------------------------
def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    arr = np.asarray(values, dtype=np.float64)
    return {
        "n": len(values),
        "p50": float(np.percentile(arr, 50)),
        "p95": float(np.percentile(arr, 95)),
        "p99": float(np.percentile(arr, 99)),
        "max": float(arr.max()),
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    v2v = [r["v2v_ms"] for r in rows if r["v2v_ms"] is not None]
    paused = [r["v2v_ms"] for r in rows if r["v2v_ms"] is not None and r["inner_pauses_s"]]
    stages = {s: percentiles([r["timeline_ms"][s] for r in rows if s in r["timeline_ms"]]) for s in STAGES}
    models = {
        k: percentiles([r["durations_ms"][k] for r in rows if k in r["durations_ms"]])
        for k in ("asr", "llm", "tts")
    }
    return {
        "v2v_ms": percentiles(v2v),
        "v2v_ms_inner_pause_turns": percentiles(paused),
        "premature_turns": sum(1 for r in rows if r["premature"]),
        "split_turns": sum(1 for r in rows if r["replies"] != 1),
        "silent_turns": sum(1 for r in rows if r["v2v_ms"] is None),
        # Playback gaps of >= 30 ms inside a reply's audio (the next clause was not ready in time).
        "stalled_turns": sum(1 for r in rows if r.get("stalls_ms")),
        "stall_ms": percentiles([g for r in rows for g in r.get("stalls_ms", [])]),
        "server_timeline_ms": stages,
        "model_ms": models,
    }


def table(summary: dict[str, Any]) -> str:
    lines = [f"{'':34}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}"]

    def row(name: str, p: dict[str, float]) -> None:
        if p:
            lines.append(f"{name:34}" + "".join(f"{p[k]:8.0f}" for k in ("p50", "p95", "p99", "max")))

    row("v2v at the client (ms)", summary["v2v_ms"])
    row("  turns with inner pauses", summary["v2v_ms_inner_pause_turns"])
    for stage, p in summary["server_timeline_ms"].items():
        if stage != "speech_end":
            row(f"  server {stage}", p)
    for model, p in summary["model_ms"].items():
        row(f"  {model} model time", p)
    lines.append(
        f"premature turns: {summary['premature_turns']}, turns answered in pieces: {summary['split_turns']}, "
        f"turns without audio: {summary['silent_turns']}"
    )
    stalls = summary.get("stall_ms") or {}
    lines.append(
        f"turns whose audio stalled (a gap >= 30 ms): {summary.get('stalled_turns', 0)}"
        + (f"; gaps p50 {stalls['p50']:.0f} ms, max {stalls['max']:.0f} ms" if stalls else "")
    )
    if "server_rss_mb" in summary:
        rss = summary["server_rss_mb"]
        lines.append(f"server RSS: {rss['before']} MB before, {rss['after']} MB after, peak {rss['peak']} MB")
        if "per_extra_session" in rss:
            lines.append(f"each of {rss['extra_sessions']} more sessions: +{rss['per_extra_session']} MB")
    return "\n".join(lines)


def server_flags(args: Any) -> list[str]:
    """The settings flags given to bench, passed on to the server it starts."""
    flags: list[str] = []
    for f in flat_fields():
        value = getattr(args, f.name, None)
        if value is not None and f.name not in ("host", "port"):
            flags += [
                "--" + f.name.replace("_", "-"),
                str(value).lower() if isinstance(value, bool) else str(value),
            ]
    return flags


def _conditions(args: Any, flags: list[str], **extra: Any) -> dict[str, Any]:
    """What a saved report was measured under: when, where, which transport and server settings."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "transport": args.transport,
        "server_flags": flags,
        **extra,
    }


def _save(folder: str, name: str, report: dict[str, Any]) -> Path:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(json.dumps(report, indent=2))
    return out


def main(args: Any, settings: Settings) -> int:
    from agent.engines import load_tts
    from streaming.devtools.benchplot import plot

    modes = _barge_in_modes(args.barge_in_modes) if args.barge_in else ()  # checked before a server starts
    flags = server_flags(args)
    if args.tts:
        return _tts(args, flags)
    started = None if args.url else LocalServer.start(*flags)
    url = args.url or (started.ws if started else "")
    if args.barge_in:
        return _barge_in(args, url, started, flags, modes)
    if args.front:
        return _front(args, url, started, flags)
    plan = Plan(url, args.turns, args.concurrency, args.transport, corpus=CORPORA[args.corpus])
    try:
        before = health(url)
        tts = load_tts(Settings())
        rows = asyncio.run(run(plan, tts))
        after = health(url)
        extra = asyncio.run(extra_sessions(url, args.extra_sessions)) if args.extra_sessions else None
    finally:
        if started is not None:
            started.stop()
    summary = summarize(rows)
    rss: dict[str, Any] = {"before": before["rss_mb"], "after": after["rss_mb"], "peak": after["peak_rss_mb"]}
    if extra is not None:
        rss.update(per_extra_session=round((extra - after["rss_mb"]) / args.extra_sessions, 2))
        rss.update(extra_sessions=args.extra_sessions)
    summary["server_rss_mb"] = rss
    conditions = _conditions(
        args,
        flags,
        concurrency=plan.concurrency,
        turns_per_client=plan.turns,
        server=args.url or "started by bench",
        models=before.get("models", {}),
        corpus_name=args.corpus,
        corpus=[{"parts": list(u.parts), "pauses_s": list(u.pauses_s)} for u in plan.corpus],
    )
    report = {"conditions": conditions, "summary": summary, "turns": rows}
    out = _save(args.out, "bench.json", report)
    plot(report, out / "bench.png")
    sys.stdout.write(table(summary) + f"\n(saved {out / 'bench.json'} and {out / 'bench.png'})\n")
    return 0


def _tts(args: Any, flags: list[str]) -> int:
    from streaming.devtools import ttsbench

    with tempfile.TemporaryDirectory() as voices:
        started = None if args.url else LocalServer.start(*flags, "--tts-voices-dir", voices)
        http = started.http if started else re.sub(r"^ws", "http", args.url).rsplit("/ws", 1)[0]
        try:
            report = ttsbench.run(http, args.turns, enrol=started is not None)
        finally:
            if started is not None:
                started.stop()
    out = _save(args.out, "tts.json", {"conditions": _conditions(args, flags, server=http), **report})
    sys.stdout.write(ttsbench.table(report) + f"\n(saved {out / 'tts.json'})\n")
    return 0


def _front(args: Any, url: str, started: LocalServer | None, flags: list[str]) -> int:
    from streaming.devtools import frontbench

    pid = started.process.pid if started is not None else args.pid
    try:
        report = frontbench.run(url, pid, args.concurrency, args.seconds)
    finally:
        if started is not None:
            started.stop()
    out = _save(args.out, "front.json", {"conditions": _conditions(args, flags, server_pid=pid), **report})
    sys.stdout.write(frontbench.table(report) + f"\n(saved {out / 'front.json'})\n")
    return 0


def _barge_in_modes(text: str) -> tuple[str, ...]:
    """The kinds of agent turn a ``--barge-in-modes`` list names, all known, or SystemExit."""
    from streaming.devtools import bargebench

    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    if not modes or set(modes) - set(bargebench.MODES):
        raise SystemExit(f"--barge-in-modes: use some of {', '.join(bargebench.MODES)}")
    return modes


def _barge_in(
    args: Any, url: str, started: LocalServer | None, flags: list[str], modes: tuple[str, ...]
) -> int:
    from agent.engines import load_tts
    from streaming.devtools import bargebench

    try:
        rows = asyncio.run(bargebench.run(url, args.turns, load_tts(Settings()), modes))
    finally:
        if started is not None:
            started.stop()
    summary = bargebench.summarize(rows)
    report = {
        "conditions": _conditions(args, flags, agent_turns=args.turns, modes=modes),
        "summary": summary,
        "turns": rows,
    }
    out = _save(args.out, "bargein.json", report)
    sys.stdout.write(bargebench.table(summary) + f"\n(saved {out / 'bargein.json'})\n")
    return 0
