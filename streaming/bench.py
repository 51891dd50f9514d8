"""``voxloop bench``: voice-to-voice latency measured the way ../shared/LATENCY.md defines it.

A client speaks a fixed list of sentences (synthesized by the embedded TTS, trailing silence trimmed
so the last speech sample is known, then real-time silence) to a running server (``--url``) or to one
it starts itself, over the WebSocket transport, one turn after another. Per turn it records the
client-measured v2v latency, whether the agent started before the user finished (premature), and the
server's per-stage timeline. It prints p50/p95/p99 and saves every turn as JSON.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import re
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from agent.config import Settings
from agent.events import STAGES
from agent.tts.base import Tts
from streaming.audio import Pcm, float_to_pcm, resample
from streaming.client import VoiceClient

log = logging.getLogger(__name__)

SENTENCES = (
    "What is the capital of France?",
    "How many legs does a spider have?",
    "Can you name a fruit that is yellow?",
    "What is two plus three?",
    "Tell me one thing about the moon.",
    "Which animal is known as the king of the jungle?",
    "What color do you get when you mix blue and yellow?",
    "How many days are there in a week?",
    "What do bees make?",
    "Is the sun a star?",
)
AUDIBLE = 328  # -40 dBFS in int16
READY = re.compile(r"serving on http://127\.0\.0\.1:(\d+)")


def utterance(tts: Tts, text: str, rate: int = 16000) -> Pcm:
    """``text`` spoken by ``tts`` at ``rate``; ends exactly on the last sample above -40 dBFS and
    starts 100 ms before the first (as a person starts talking into an open microphone)."""
    pcm = resample(float_to_pcm(tts.synthesize(text)), tts.sample_rate, rate)
    loud = np.nonzero(np.abs(pcm.astype(np.int32)) > AUDIBLE)[0]
    start = max(0, int(loud[0]) - rate // 10)
    return pcm[start : int(loud[-1]) + 1]


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


async def run_turns(url: str, turns: int, tts: Tts, rate: int = 16000) -> list[dict[str, Any]]:
    """Speak ``turns`` sentences on one session; the first is a warm-up and is not returned."""
    speech = {s: utterance(tts, s, rate) for s in SENTENCES}
    rows: list[dict[str, Any]] = []
    async with VoiceClient(url, input_rate=rate) as client:
        await client.stream(np.zeros(rate // 2, np.int16))
        for i in range(turns + 1):
            sentence = SENTENCES[i % len(SENTENCES)]
            result = await client.turn(speech[sentence])
            await client.stream(np.zeros(rate * 3 // 10, np.int16))  # the user takes a breath
            if i == 0:
                continue  # LATENCY.md: after the first turn
            rows.append(
                {
                    "turn": i,
                    "sentence": sentence,
                    "transcript": result.transcript,
                    "reply": result.reply_text,
                    "v2v_ms": None if result.v2v_s is None else round(result.v2v_s * 1000.0, 1),
                    "premature": result.premature,
                    "timeline_ms": result.metrics.get("timeline_ms", {}),
                    "durations_ms": result.metrics.get("durations_ms", {}),
                }
            )
            log.info("turn %d/%d: v2v %s ms | %s", i, turns, rows[-1]["v2v_ms"], result.transcript)
    return rows


async def extra_sessions(url: str, n: int) -> float:
    """Open ``n`` more sessions at once, each speaking one line; return the server's RSS (MB) while
    they are all still connected: what sessions beyond the first cost."""
    clients = [VoiceClient(url) for _ in range(n)]
    for c in clients:
        await c.__aenter__()
    try:
        for c in clients:
            await c.send_json({"type": "say", "text": "This session is here to be counted."})
        for c in clients:
            await c.wait_for("response.done", timeout_s=60)
        rss: float = (await asyncio.to_thread(health, url))["rss_mb"]
        return rss
    finally:
        for c in clients:
            await c.__aexit__(None, None, None)


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    v2v = [r["v2v_ms"] for r in rows if r["v2v_ms"] is not None]
    stages = {s: percentiles([r["timeline_ms"][s] for r in rows if s in r["timeline_ms"]]) for s in STAGES}
    models = {k: percentiles([r["durations_ms"][k] for r in rows if k in r["durations_ms"]])
              for k in ("asr", "llm", "tts")}  # fmt: skip
    return {
        "v2v_ms": percentiles(v2v),
        "premature_turns": sum(1 for r in rows if r["premature"]),
        "silent_turns": sum(1 for r in rows if r["v2v_ms"] is None),
        "server_timeline_ms": stages,
        "model_ms": models,
    }


def table(summary: dict[str, Any]) -> str:
    lines = [f"{'':28}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}"]

    def row(name: str, p: dict[str, float]) -> None:
        if p:
            lines.append(f"{name:28}" + "".join(f"{p[k]:9.0f}" for k in ("p50", "p95", "p99", "max")))

    row("v2v at the client (ms)", summary["v2v_ms"])
    for stage, p in summary["server_timeline_ms"].items():
        if stage != "speech_end":
            row(f"  server {stage}", p)
    for model, p in summary["model_ms"].items():
        row(f"  {model} model time", p)
    lines.append(
        f"premature turns: {summary['premature_turns']}, turns without audio: {summary['silent_turns']}"
    )
    if "server_rss_mb" in summary:
        rss = summary["server_rss_mb"]
        lines.append(f"server RSS: {rss['before']} MB before, {rss['after']} MB after, peak {rss['peak']} MB")
        if "per_extra_session" in rss:
            lines.append(f"each of {rss['extra_sessions']} more sessions: +{rss['per_extra_session']} MB")
    return "\n".join(lines)


def conditions(
    url: str | None, turns: int, started: LocalServer | None, settings: Settings
) -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus, {platform.platform()}",
        "transport": "websocket-pcm",
        "concurrency": 1,
        "turns": turns,
        "server": url or "started by bench with its default settings",
        "models": {"asr": settings.asr_model, "llm": settings.llm_model, "tts": settings.tts_voice},
        "server_log_tail": started.log[-3:] if started else [],
    }


def health(ws_url: str) -> dict[str, Any]:
    """The server's /healthz (its RSS figures), from its WebSocket URL."""
    http = ws_url.replace("ws://", "http://", 1).rsplit("/", 1)[0] + "/healthz"
    with urllib.request.urlopen(http, timeout=5) as r:
        return json.load(r)  # type: ignore[no-any-return]


def main(args: Any, settings: Settings) -> int:
    from agent.engines import load_tts

    started = None if args.url else LocalServer.start()
    url = args.url or (started.ws if started else "")
    try:
        before = health(url)
        tts = load_tts(settings)
        rows = asyncio.run(run_turns(url, args.turns, tts))
        after = health(url)
        extra = asyncio.run(extra_sessions(url, args.extra_sessions)) if args.extra_sessions else None
    finally:
        if started is not None:
            started.stop()
    summary = summarize(rows)
    summary["server_rss_mb"] = {
        "before": before["rss_mb"],
        "after": after["rss_mb"],
        "peak": after["peak_rss_mb"],
    }
    if extra is not None:
        per = (extra - after["rss_mb"]) / args.extra_sessions
        summary["server_rss_mb"].update(per_extra_session=round(per, 2), extra_sessions=args.extra_sessions)
    report = {
        "conditions": conditions(args.url, args.turns, started, settings),
        "summary": summary,
        "turns": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(report, indent=2))
    sys.stdout.write(table(summary) + f"\n(saved {out / 'bench.json'})\n")
    return 0
