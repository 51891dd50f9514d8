"""The echo gate with synthetic echo: a delayed, attenuated copy of what the agent sent."""

from __future__ import annotations

import numpy as np
import pytest

from agent.echo import EchoGate, EchoGatePolicy

RATE = 16000
WINDOW = 512


def voice(seconds: float, amplitude: float, seed: int) -> np.ndarray:
    """Speech-like: a harmonic tone with a syllable envelope."""
    t = np.arange(int(seconds * RATE)) / RATE
    rng = np.random.default_rng(seed)
    f0 = 120 + 40 * rng.random()
    tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t)
    x = tone * envelope
    return (x / np.abs(x).max() * amplitude * 32767).astype(np.int16)


def run(
    gate: EchoGate,
    agent: np.ndarray,
    user: np.ndarray,
    delay_s: float,
    echo_db: float,
    jitter: int = 0,
    speech: np.ndarray | None = None,
) -> list[bool]:
    """Send the agent's audio in 20 ms frames (stamped with the input position, +-jitter), and feed
    the input = its echo + the user; return which windows the gate allowed. ``speech``: where the
    VAD would say speech (default: wherever the user talks)."""
    frame = 320
    rng = np.random.default_rng(1)
    for i in range(0, len(agent), frame):
        chunk = agent[i : i + frame]
        at = i + int(rng.integers(-jitter, jitter + 1)) if jitter else i
        gate.reference(float(np.abs(chunk.astype(np.int32)).max()) / 32768.0, max(at, 0), len(chunk))
    delay = int(delay_s * RATE)
    echo = np.zeros(len(agent) + delay, np.float64)
    echo[delay:] = agent * 10 ** (echo_db / 20)
    mic = echo[: len(user)] + user if len(user) else echo
    mic = np.clip(mic, -32768, 32767).astype(np.int16)
    vad = (np.abs(user) > 0) if speech is None else speech
    return [
        gate.allows(mic[end - WINDOW : end], end - WINDOW, end, bool(vad[end - WINDOW : end].any()))
        for end in range(WINDOW, len(mic) + 1, WINDOW)
    ]


@pytest.mark.parametrize("seed", [1, 4, 7])
@pytest.mark.parametrize("delay_s", [0.05, 0.1, 0.15, 0.3])
@pytest.mark.parametrize("echo_db", [-6.0, -9.0, -12.0])
def test_the_agents_own_echo_never_opens_the_gate(delay_s: float, echo_db: float, seed: int) -> None:
    gate = EchoGate()
    agent = voice(3.0, 0.8, seed=seed)
    assert not any(run(gate, agent, np.zeros(0, np.int16), delay_s, echo_db, jitter=320))
    assert gate.blocked > 0


def test_a_user_talking_over_the_echo_opens_it() -> None:
    gate = EchoGate()
    agent = voice(3.0, 0.6, seed=1)
    user = np.zeros(len(agent) + 1600, np.int16)
    user[16000:32000] = voice(1.0, 0.8, seed=2)  # the user speaks from 1 s to 2 s
    allowed = run(gate, agent, user, 0.1, -6.0, jitter=320)
    during = allowed[16000 // WINDOW : 32000 // WINDOW]
    assert longest_run(during) >= 4  # 4 windows = 128 ms: enough to start a barge-in (0.1 s)
    assert not any(allowed[: 16000 // WINDOW - 1])  # before the user speaks: echo only


def test_without_reference_everything_passes() -> None:
    gate = EchoGate()
    window = voice(0.032, 0.01, seed=3)
    assert gate.allows(window, 0, WINDOW)
    gate.reference(0.5, 0, 320)
    far_later = 10 * RATE  # long after the agent spoke
    assert gate.allows(window, far_later, far_later + WINDOW)


def longest_run(flags: list[bool]) -> int:
    best = current = 0
    for ok in flags:
        current = current + 1 if ok else 0
        best = max(best, current)
    return best


@pytest.mark.parametrize(
    ("echo_db", "user_level"),
    [(-60.0, 0.4), (-60.0, 0.8), (-6.0, 0.8), (-12.0, 0.6)],
    ids=["no-echo-quiet-user", "no-echo", "echo-6dB", "echo-12dB"],
)
def test_a_user_can_start_a_barge_in_whatever_the_echo(echo_db: float, user_level: float) -> None:
    """Within the first half second of the user talking over the agent (at 0.8), there is a run of
    at least 4 windows (128 ms, enough to pause the agent) that the gate lets through."""
    gate = EchoGate()
    agent = voice(4.0, 0.8, seed=1)
    user = np.zeros(len(agent) + 1600, np.int16)
    user[3 * RATE : 4 * RATE] = voice(1.0, user_level, seed=2)
    allowed = run(gate, agent, user, 0.1, echo_db, jitter=320)
    first_half_second = allowed[3 * RATE // WINDOW : 3 * RATE // WINDOW + 16]
    assert longest_run(first_half_second) >= 4


def test_behind_a_canceller_a_user_stays_heard_for_their_whole_sentence() -> None:
    """Once speech it lets through is trusted as the user's, the gate does not learn their loudness
    as the echo's: it stays open for all of a 1.5 s sentence over the agent (without that, it
    shut after ~0.2 s and the sentence fell apart into short overlaps)."""
    agent = voice(4.0, 0.8, seed=1)
    user = np.zeros(len(agent), np.int16)
    user[RATE : RATE * 5 // 2] = voice(1.5, 0.8, seed=2)
    trusted = EchoGate()
    trusted.restart(0.05, trust_open=True)  # AEC3's residual: -26 dB
    during = slice(RATE // WINDOW + 1, RATE * 5 // 2 // WINDOW - 1)
    allowed = run(trusted, agent, user, 0.1, -26.0, jitter=320)[during]
    assert all(allowed)
    alone = EchoGate()
    alone.restart(0.05, trust_open=False)
    assert not all(run(alone, agent, user, 0.1, -26.0, jitter=320)[during])  # the old way shuts


def test_the_gate_alone_learns_an_echo_louder_than_it_assumed_at_once() -> None:
    """Without a canceller the gate does not trust what it lets through: an echo at -2 dB (louder
    than the -6 dB it assumes) may get one window through, then it has learned it."""
    gate = EchoGate()
    agent = voice(3.0, 0.8, seed=4)
    echo_only = np.zeros(0, np.int16)
    speech = np.ones(len(agent) + 1600, bool)  # the VAD hears the echo as speech throughout
    allowed = run(gate, agent, echo_only, 0.1, -2.0, jitter=320, speech=speech)
    assert longest_run(allowed) <= 1


def _residual_run(gate: EchoGate, bursts_at_s: list[float]) -> list[bool]:
    """Behind a canceller (restarted at 0): the agent talks at 0.5 throughout; what AEC3 leaves of
    its echo is 35 dB down, except for bursts it leaves only 8 dB down (r = 0.4 for 64 ms, then
    0.2 for 96 ms), which the VAD hears as speech (measured just after AEC3 found an echo, and
    again when it re-adapts)."""
    seconds = 4.0
    for at in range(0, int(seconds * RATE), 320):
        gate.reference(0.5, at, 320)
    gate.restart(gate.policy.after_aec_prior, trust_open=True)
    allowed = []
    for end in range(WINDOW, int(seconds * RATE) + 1, WINDOW):
        start = end - WINDOW
        into = [(start / RATE - t) for t in bursts_at_s if 0 <= start / RATE - t < 0.16]
        ratio = 0.0089 if not into else (0.4 if into[0] < 0.064 else 0.2)
        window = np.full(WINDOW, int(ratio * 0.5 * 32767), np.int16)
        allowed.append(gate.allows(window, start, end, speech=bool(into)))
    return allowed


def test_behind_a_canceller_bursts_of_residual_echo_cannot_start_speech() -> None:
    """A burst just after AEC3 found the echo (the gate has not settled) and one 2.5 s later (the
    learned residual is tiny by then) each get at most two windows through, never the four a
    barge-in needs; the gate before these guards let both through."""
    assert longest_run(_residual_run(EchoGate(), [0.3, 2.5])) <= 2
    unguarded = EchoGatePolicy(restart_hold_s=0.0, residual_quantile=0.9, hangover_after=1, settle_s=0.0)
    assert longest_run(_residual_run(EchoGate(unguarded), [0.3, 2.5])) >= 4


def test_behind_a_canceller_the_gate_does_not_learn_from_what_holds_more_than_echo() -> None:
    """Windows the canceller says hold more than echo (``near_end``: the user, perhaps too soft for
    the VAD to be sure) or that passed uncancelled do not teach the gate the echo's level."""
    for flag in ({"near_end": True}, {"raw_return": 0.5}, {}):
        gate = EchoGate()
        gate.reference(0.5, 0, 4 * RATE)
        gate.restart(0.05, trust_open=True)
        window = np.full(WINDOW, int(0.3 * 32767), np.int16)  # r = 0.6: loud, but the VAD is unsure
        for end in range(WINDOW, 2 * RATE, WINDOW):
            gate.allows(window, end - WINDOW, end, speech=False, **flag)  # type: ignore[arg-type]
        if flag:
            assert gate.echo_return == pytest.approx(0.05), flag
        else:
            assert gate.echo_return > 0.5  # learned as echo, as before


def test_input_that_passed_uncancelled_is_held_to_the_raw_echo_level() -> None:
    gate = EchoGate()
    gate.reference(0.5, 0, 4 * RATE)
    gate.restart(0.05, trust_open=True)
    at = RATE
    echo_raw = np.full(WINDOW, int(0.25 * 32767), np.int16)  # the raw echo: r = 0.5
    assert gate.allows(echo_raw, at, at + WINDOW)  # cancelled input that loud is not echo ...
    assert not gate.allows(echo_raw, at, at + WINDOW, raw_return=0.5)  # ... uncancelled, it is
    user = np.full(WINDOW, int(0.45 * 32767), np.int16)  # the user over it: r = 0.9
    assert gate.allows(user, at, at + WINDOW, raw_return=0.5)


def test_where_the_canceller_found_no_echo_every_window_passes_and_none_is_learned() -> None:
    """No echo in this run of agent speech (a headset): a user quieter than the agent's reference
    passes for the whole sentence, and what they said is not taken for the echo's level."""
    agent = voice(4.0, 0.8, seed=1)
    user = voice(1.5, 0.15, seed=2)  # -15 dB under the agent: the gate alone would refuse it
    gate = EchoGate()
    for i in range(0, len(agent), 320):
        gate.reference(float(np.abs(agent[i : i + 320].astype(np.int32)).max()) / 32768.0, i, 320)
    before = gate.echo_return
    allowed = [
        gate.allows(user[e - WINDOW : e], e - WINDOW, e, True, echo_absent=True)
        for e in range(WINDOW, len(user) + 1, WINDOW)
    ]
    assert all(allowed) and gate.echo_return == before and gate.blocked == 0
    alone = [
        gate.allows(user[e - WINDOW : e], e - WINDOW, e, True) for e in range(WINDOW, len(user) + 1, WINDOW)
    ]
    assert not all(alone)  # without that word from the canceller, the gate refuses them
