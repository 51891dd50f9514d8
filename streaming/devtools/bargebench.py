"""``voxloop bench --barge-in``: how barge-in feels, measured at the client over the real transport.

The agent speaks a long scripted line (protocol ``say``); 1.2 s in, the client does one of five
things, in turn:
- **interrupt**: says "Wait, what is the capital of Italy?". Measured: the time from the user's first
  audible sample to the last agent audio the client plays of the interrupted line (the receipt of its
  last frame + 20 ms; the client drops its buffer on ``audio.clear``). Goal p50 <= 150 ms.
- **echo**: says nothing, but its microphone returns the agent's audio at -6 dB, 50-150 ms later,
  through a short room tail (a client without echo cancellation). Any interruption is a false one.
- **echo+interrupt**: the same echo, and the user interrupts over it: it must stop the agent and be
  answered (a transcript with the user's words, a reply).
- **backchannel**: says "Okay." / "Yeah." / "Right.". Passing through (no interruption) is right.
- **nonlexical**: says "Mm-hmm." / "Uh-huh." / "Hmm." (wordless): passing through is right.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.tts.base import Tts
from streaming.devtools.bench import AUDIBLE, percentiles, speech
from streaming.devtools.client import VoiceClient

LINES = (
    "Once upon a time, in a kingdom by the sea, there lived a brave knight who rode along the cliffs "
    "every morning, looking out over the water and thinking about the world beyond it.",
    "The moon moves around the Earth about once a month, and its pull on the oceans gives us the tides, "
    "which rise and fall twice a day along every coast of the world.",
    "To bake good bread you need flour, water, salt and yeast, a warm place for the dough to rise, "
    "and patience, because the slow rise is what gives the bread its flavour.",
)
INTERRUPTION = "Wait, what is the capital of Italy?"
BACKCHANNELS = ("Okay.", "Yeah.", "Right.")
NONLEXICAL = ("Mm-hmm.", "Uh-huh.", "Hmm.")
ECHO_DELAYS_S = (0.05, 0.1, 0.15)
ECHO_TAIL_S = 0.05  # the room's decaying tail after the direct echo
MODES = ("interrupt", "echo", "echo+interrupt", "backchannel", "nonlexical")


@dataclass
class _Turn:
    mode: str
    detail: str
    interrupted: bool
    stop_ms: float | None = None
    answered: bool | None = None  # an interruption: its words were transcribed and replied to


async def _one(
    client: VoiceClient, i: int, audio: dict[str, np.ndarray], modes: tuple[str, ...] = MODES
) -> _Turn:
    mode = modes[i % len(modes)]
    k = i // len(modes)  # this mode's how-many-th turn: which delay, backchannel
    mark = len(client._inbox)
    await client.send_json({"type": "say", "text": LINES[i % len(LINES)]})
    await client.hold_silence(lambda: client.first("response.audio.started", mark) is not None)
    tid = client.first("response.audio.started", mark)["turn_id"]  # type: ignore[index]
    detail = ""
    if mode.startswith("echo"):
        delay = ECHO_DELAYS_S[k % 3]
        client.echo_gain, client.echo_delay_s, client.echo_tail_s = 10 ** (-6 / 20), delay, ECHO_TAIL_S
        detail = f"-6 dB, {delay * 1000:.0f} ms, {ECHO_TAIL_S * 1000:.0f} ms tail"
    await client.stream(np.zeros(int(1.2 * client.input_rate), np.int16))
    spoken_at = None
    if mode in ("interrupt", "echo+interrupt"):
        pcm = audio[INTERRUPTION]
        first_loud = int(np.nonzero(np.abs(pcm.astype(np.int32)) > AUDIBLE)[0][0])
        started = time.monotonic()
        await client.stream(pcm)
        spoken_at = started + first_loud / client.input_rate
        detail = f"{detail} {INTERRUPTION}".strip()
    elif mode == "backchannel":
        detail = BACKCHANNELS[k % 3]
        await client.stream(audio[detail])
    elif mode == "nonlexical":
        detail = NONLEXICAL[k % 3]
        await client.stream(audio[detail])
    await client.hold_silence(
        lambda: client.first("response.done", mark, turn_id=tid) is not None, timeout_s=60
    )
    done = client.first("response.done", mark, turn_id=tid) or {}
    turn = _Turn(mode, detail, bool(done.get("interrupted")))
    if spoken_at is not None and turn.interrupted:
        received = client._inbox[mark:]
        clear = next((r.at for r in received if r.message and r.message["type"] == "audio.clear"), None)
        frames = [r.at for r in received if r.pcm is not None and (clear is None or r.at < clear)]
        if frames:
            turn.stop_ms = round((frames[-1] + 0.02 - spoken_at) * 1000.0, 1)
        # the new turn's answer, before the next line
        await client.hold_silence(
            lambda: client.first("response.done", mark, turn_id=tid + 1) is not None, timeout_s=60
        )
        final = client.first("transcript.final", mark, turn_id=tid + 1) or {}
        answer = client.first("response.done", mark, turn_id=tid + 1) or {}
        turn.answered = "italy" in str(final.get("text", "")).lower() and bool(answer.get("text"))
    elif spoken_at is not None:
        turn.answered = False
    client.echo_gain = 0.0
    await client.stream(np.zeros(client.input_rate // 2, np.int16))
    return turn


async def run(url: str, turns: int, tts: Tts, modes: tuple[str, ...] = MODES) -> list[dict[str, Any]]:
    import sys

    from tqdm import tqdm

    audio = {t: speech(tts, t) for t in (INTERRUPTION, *BACKCHANNELS, *NONLEXICAL)}
    rows: list[dict[str, Any]] = []
    async with VoiceClient(url) as client:
        await client.stream(np.zeros(8000, np.int16))
        for i in tqdm(range(turns), desc="agent turns", unit="turn", file=sys.stderr):
            t = await _one(client, i, audio, modes)
            rows.append(
                {
                    "mode": t.mode,
                    "detail": t.detail,
                    "interrupted": t.interrupted,
                    "stop_ms": t.stop_ms,
                    "answered": t.answered,
                }
            )
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def of(mode: str) -> list[dict[str, Any]]:
        return [r for r in rows if r["mode"] == mode]

    def count(selected: list[dict[str, Any]], interrupted: bool) -> str:
        return f"{sum(r['interrupted'] is interrupted for r in selected)}/{len(selected)}"

    interrupts, echoes, backs = of("interrupt"), of("echo"), of("backchannel")
    over_echo, wordless = of("echo+interrupt"), of("nonlexical")
    return {
        "stop_ms": percentiles([r["stop_ms"] for r in interrupts if r["stop_ms"] is not None]),
        "stop_ms_over_echo": percentiles([r["stop_ms"] for r in over_echo if r["stop_ms"] is not None]),
        "interruptions_that_stopped_the_agent": count(interrupts, True),
        "interruptions_answered": f"{sum(bool(r['answered']) for r in interrupts)}/{len(interrupts)}",
        "false_interruptions_with_echo": count(echoes, True),
        "interruptions_over_echo_that_stopped_the_agent": count(over_echo, True),
        "interruptions_over_echo_answered": f"{sum(bool(r['answered']) for r in over_echo)}/{len(over_echo)}",
        "backchannels_passed_through": count(backs, False),
        "nonlexical_backchannels_passed_through": count(wordless, False),
    }


def table(summary: dict[str, Any]) -> str:
    s = summary["stop_ms"]
    lines = []
    if s:
        lines.append(
            "user speech start -> last agent audio at the client (ms): "
            f"p50 {s['p50']:.0f}, p95 {s['p95']:.0f}, p99 {s['p99']:.0f}, max {s['max']:.0f} (n={s['n']})"
        )
    e = summary.get("stop_ms_over_echo") or {}
    if e:
        lines.append(f"... spoken over the echo (ms): p50 {e['p50']:.0f}, p95 {e['p95']:.0f} (n={e['n']})")
    lines.append(f"interruptions that stopped the agent: {summary['interruptions_that_stopped_the_agent']}")
    lines.append(f"interruptions answered: {summary['interruptions_answered']}")
    lines.append(f"false interruptions with -6 dB echo: {summary['false_interruptions_with_echo']}")
    lines.append(
        "interruptions over that echo, stopped the agent: "
        f"{summary['interruptions_over_echo_that_stopped_the_agent']}"
    )
    lines.append(f"interruptions over that echo, answered: {summary['interruptions_over_echo_answered']}")
    lines.append(f"backchannels passed through: {summary['backchannels_passed_through']}")
    lines.append(f"wordless backchannels passed through: {summary['nonlexical_backchannels_passed_through']}")
    return "\n".join(lines)
