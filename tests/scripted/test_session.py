"""A whole session on a real event loop with fake models: what the client receives, what memory holds."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
import pytest

from agent import events as ev
from agent.config import SessionOptions
from agent.events import STAGE_ORDER, AudioFrame, AudioIn, CommitIn, ConfigureIn, Input, PlaybackIn, TextIn
from agent.session import Session
from agent.turn import UserState
from streaming.playout import PacedOutput
from tests.conftest import leaked_tasks
from tests.scripted.fakes import FakeAsr, FakeEot, FakeLlm, fake_engines, fast_settings, silence, speech

FRAME = 320  # 20 ms at 16 kHz


@dataclass
class Harness:
    session: Session
    output: PacedOutput
    events: list[ev.Event] = field(default_factory=list)
    frames: list[AudioFrame] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    frames_at: list[int] = field(default_factory=list)  # len(frames) when each event was emitted

    def emit(self, event: ev.Event) -> None:
        self.events.append(event)
        self.frames_at.append(len(self.frames))
        self.changed.set()

    def frames_when(self, kind: type, turn_id: int) -> int:
        i = next(i for i, e in enumerate(self.events) if isinstance(e, kind) and e.turn_id == turn_id)
        return self.frames_at[i]

    async def feed(self, pcm: np.ndarray, realtime: bool = False) -> None:
        for i in range(0, len(pcm), FRAME):
            self.session.push(AudioIn(pcm[i : i + FRAME], time.monotonic()))
            await asyncio.sleep(0.02 if realtime else 0.001)

    async def taken(self, item: Input) -> None:
        """Push ``item`` and wait until the session's input task has taken it (inputs go in order)."""
        self.session.push(item)
        async with asyncio.timeout(5):
            while self.session.inbox_size:  # noqa: ASYNC110 - a test polling the session's inbox
                await asyncio.sleep(0.001)
            await asyncio.sleep(0)

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]

    async def until(self, kind: type, count: int = 1, timeout_s: float = 10.0) -> None:
        async with asyncio.timeout(timeout_s):
            while len(self.of(kind)) < count:
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def harness(eot: FakeEot | None = None, **settings: object) -> AsyncIterator[Harness]:
    engines = fake_engines(eot)
    s = fast_settings(**settings)
    frames: list[AudioFrame] = []
    output = PacedOutput(16000, frames.append, lead_s=s.audio.playout_lead_s)
    h = Harness(None, output, frames=frames)  # type: ignore[arg-type]
    h.session = Session(engines, s, output, h.emit, session_id="test")
    h.session.push(ConfigureIn(SessionOptions()))
    tasks = [asyncio.create_task(output.run()), asyncio.create_task(h.session.run())]
    try:
        yield h
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.wait(tasks)
        engines.close()
    # No task of the session may outlive it, whatever its name (and the engines' queues are empty:
    # no model work of the session is left queued either).
    assert not await leaked_tasks()
    assert all(q.pending == 0 for q in engines.queues())


async def test_a_turn_is_heard_answered_spoken_and_remembered() -> None:
    async with harness() as h:
        await h.feed(np.concatenate([silence(0.2), speech(0.5), silence(0.4)]))
        await h.until(ev.TurnMetrics)
    kinds = [type(e).__name__ for e in h.events if not isinstance(e, ev.ResponseTextDelta)]
    assert kinds == [
        "SessionReady", "SpeechStarted", "SpeechStopped", "TranscriptFinal", "ResponseStarted",
        "ResponseAudioStarted", "ResponseAudioDone", "ResponseDone", "TurnMetrics",
    ]  # fmt: skip
    (final,) = h.of(ev.TranscriptFinal)
    assert final.text == "w1 w2 w3 w4 w5?"
    (done,) = h.of(ev.ResponseDone)
    assert done.text.startswith("You said w1 w2 w3 w4 w5?") and not done.interrupted
    assert sum(len(f.pcm) for f in h.frames) > 0
    (metrics,) = h.of(ev.TurnMetrics)
    stamps = [metrics.timeline_ms[k] for k in STAGE_ORDER]
    assert stamps == sorted(stamps)
    assert 0 < metrics.timeline_ms["endpoint"] <= metrics.timeline_ms["audio_first_sent"]
    assert [m.role for m in h.session.memory.messages] == ["user", "assistant"]
    assert h.session.memory.messages[1].text == done.text


async def test_speech_that_resumes_after_a_pause_gets_one_reply_to_all_of_it() -> None:
    async with harness() as h:
        # 0.15 s pause: silence onset fires (speculative ASR of the first half), then speech resumes.
        await h.feed(np.concatenate([speech(0.3), silence(0.15), speech(0.3), silence(0.4)]))
        await h.until(ev.ResponseDone)
        await asyncio.sleep(0.1)
    assert len(h.of(ev.TranscriptFinal)) == 1
    assert len(h.of(ev.ResponseStarted)) == 1
    (done,) = h.of(ev.ResponseDone)
    assert h.of(ev.TranscriptFinal)[0].text == "w1 w2 w3 w4 w5 w6?"  # both halves
    assert "w6" in done.text
    assert [m.text for m in h.session.memory.messages if m.role == "user"] == ["w1 w2 w3 w4 w5 w6?"]
    # A speculative reply to the first half did run (the LLM saw it), and left no trace: not on the
    # wire (one reply, one transcript, above), not in memory (one user message, above).
    llm = h.session.engines.llm.model
    assert isinstance(llm, FakeLlm)
    assert [m[-1].content for m in llm.seen] == ["w1 w2 w3?", "w1 w2 w3 w4 w5 w6?"]
    texts = [e.text for e in h.of(ev.ResponseTextDelta)]
    assert "w1 w2 w3?" not in "".join(texts).replace("w1 w2 w3 w4", "")


async def test_speech_after_the_endpoint_before_the_reply_is_heard_is_still_the_same_turn() -> None:
    async with harness() as h:
        llm = h.session.engines.llm.model
        assert isinstance(llm, FakeLlm)
        llm.token_s = 0.05  # the reply's first audio comes ~0.25 s after the endpoint
        await h.feed(np.concatenate([speech(0.3), silence(0.3)]))  # the 0.2 s endpoint passes
        await asyncio.sleep(0.05)
        assert h.session.turns.state is UserState.HELD and not h.of(ev.ResponseStarted)
        await h.feed(np.concatenate([speech(0.3), silence(0.4)]))  # ... and the user goes on
        await h.until(ev.ResponseDone)
        await asyncio.sleep(0.1)
    assert h.session.turns_resumed == 1
    # One turn on the wire, answering all of it; the void reply left nothing, not even its
    # speech.stopped, and nothing in memory.
    kinds = [type(e).__name__ for e in h.events if not isinstance(e, ev.ResponseTextDelta)]
    assert kinds == [
        "SessionReady", "SpeechStarted", "SpeechStopped", "TranscriptFinal", "ResponseStarted",
        "ResponseAudioStarted", "ResponseAudioDone", "ResponseDone", "TurnMetrics",
    ]  # fmt: skip
    assert h.of(ev.TranscriptFinal)[0].text == "w1 w2 w3 w4 w5 w6?"
    assert [m.text for m in h.session.memory.messages if m.role == "user"] == ["w1 w2 w3 w4 w5 w6?"]
    assert [m[-1].content for m in llm.seen] == ["w1 w2 w3?", "w1 w2 w3 w4 w5 w6?"]


async def test_the_end_of_turn_model_is_asked_and_its_opinion_reported() -> None:
    eot = FakeEot(0.1)  # "more is coming": a finished sentence waits endpoint_hold_s
    async with harness(eot, endpoint_confident_s=0.1, endpoint_hold_s=0.6) as h:
        await h.feed(np.concatenate([speech(0.3), silence(0.4)]), realtime=True)
        await asyncio.sleep(0.1)
        assert not h.of(ev.SpeechStopped)  # 0.5 s of silence: held
        await h.feed(silence(0.3), realtime=True)
        await h.until(ev.TurnMetrics)
        eot.probability = 0.95  # the next pause: the model agrees with the transcript
        await h.feed(np.concatenate([speech(0.3), silence(0.3)]), realtime=True)
        await h.until(ev.TurnMetrics, 2)
    first, second = (m.endpointing for m in h.of(ev.TurnMetrics))
    assert {k: first[k] for k in ("reason", "transcript", "acoustic", "endpoint_ms")} == {
        "reason": "silence",
        "transcript": "complete",
        "acoustic": 0.1,
        "endpoint_ms": 600,
    }
    assert 0 < first["acoustic_ms"] < 400  # the opinion came back long before the 600 ms bound
    assert second["acoustic"] == 0.95 and second["endpoint_ms"] == 100
    assert eot.seen and all(n <= 8 * 16000 for n in eot.seen)


async def test_partial_transcripts_are_read_into_the_llm_while_the_user_speaks() -> None:
    async with harness(partial_interval_s=0.3) as h:
        await h.feed(np.concatenate([speech(1.2), silence(0.4)]), realtime=True)
        await h.until(ev.ResponseDone)
    llm = h.session.engines.llm.model
    assert isinstance(llm, FakeLlm)
    partials = [e.text for e in h.of(ev.TranscriptPartial)]
    assert partials and llm.prefilled and set(llm.prefilled) <= set(partials)
    assert llm.seen[-1][-1].content.startswith(llm.prefilled[-1].rstrip("."))  # the final goes on from it


async def test_no_prefill_when_it_is_turned_off() -> None:
    async with harness(partial_interval_s=0.3, prefill_partials=False) as h:
        await h.feed(np.concatenate([speech(1.2), silence(0.4)]), realtime=True)
        await h.until(ev.ResponseDone)
    llm = h.session.engines.llm.model
    assert isinstance(llm, FakeLlm) and h.of(ev.TranscriptPartial) and not llm.prefilled


async def test_a_model_failing_mid_turn_is_reported_and_the_session_goes_on() -> None:
    async with harness() as h:
        llm = h.session.engines.llm.model
        assert isinstance(llm, FakeLlm)
        llm.fail_next = True
        await h.feed(np.concatenate([speech(0.3), silence(0.4)]))
        await h.until(ev.Error)
        (err,) = h.of(ev.Error)
        assert err.code == "llm_failed" and "fell over" in err.message and not err.fatal
        await h.feed(np.concatenate([speech(0.3), silence(0.4)]))
        await h.until(ev.ResponseDone)
    (done,) = h.of(ev.ResponseDone)
    assert done.turn_id == 2 and not done.interrupted


async def test_user_speech_during_the_reply_stops_it_and_memory_keeps_what_was_heard() -> None:
    async with harness() as h:
        await h.feed(np.concatenate([speech(0.3), silence(0.3)]))
        await h.until(ev.ResponseAudioStarted)
        await asyncio.sleep(0.3)  # the agent has been talking for a while
        sent_before = len(h.frames)
        asr = h.session.engines.asr.model
        assert isinstance(asr, FakeAsr)
        asr.overlap_texts.append("Wait, stop.")  # the user's own words, not the agent's
        await h.feed(np.concatenate([speech(0.2), silence(0.3)]), realtime=True)
        await h.until(ev.AudioClear)
        await h.until(ev.ResponseAudioStarted, 2)  # the new turn's reply
    # Nothing of the old turn was sent after the clear: the next frame belongs to the new reply.
    assert h.frames_when(ev.AudioClear, 1) == h.frames_when(ev.ResponseAudioStarted, 2)
    assert sent_before > 0
    (clear,) = h.of(ev.AudioClear)
    assert clear.turn_id == 1
    done = h.of(ev.ResponseDone)[0]
    assert done.interrupted and done.turn_id == 1
    full = "You said w1 w2 w3?. That is one clause, and here is another clause for you."
    assert 0 < len(done.text) < len(full) and full.startswith(done.text)
    assistant = [m for m in h.session.memory.messages if m.role == "assistant"]
    assert assistant[0].text == done.text and assistant[0].interrupted


async def test_typed_text_is_answered_and_say_is_spoken_verbatim() -> None:
    async with harness() as h:
        h.session.push(TextIn("hello there"))
        await h.until(ev.ResponseDone)
        h.session.push(TextIn("Welcome back.", verbatim=True))
        await h.until(ev.ResponseDone, 2)
    first, second = h.of(ev.ResponseDone)
    assert first.text.startswith("You said hello there.")
    assert second.text == "Welcome back."


async def test_the_voice_changes_mid_session_and_an_unknown_one_is_refused_keeping_it() -> None:
    async with harness() as h:
        await h.until(ev.SessionReady)
        (ready,) = h.of(ev.SessionReady)
        assert ready.voices == ("fake", "other") and ready.voice == "fake"
        await h.taken(ConfigureIn(SessionOptions(voice="other")))
        h.session.push(TextIn("In the other voice.", verbatim=True))
        await h.until(ev.ResponseDone)
        await h.taken(ConfigureIn(SessionOptions(voice="nobody")))
        h.session.push(TextIn("Still the other voice.", verbatim=True))
        await h.until(ev.ResponseDone, 2)
    (error,) = h.of(ev.Error)
    assert error.code == "bad_voice" and "other" in error.message and not error.fatal
    tts = h.session.engines.tts.model
    assert [r.voice for r in tts.requests] == ["other", "other"]  # type: ignore[attr-defined]


async def test_text_over_the_limit_is_refused() -> None:
    async with harness(max_tts_chars=10) as h:
        from agent.errors import LimitError

        with pytest.raises(LimitError) as info:
            h.session.push(TextIn("x" * 11, verbatim=True))
        assert info.value.code == "text_too_long"


async def test_a_held_reply_is_released_at_once_when_the_endpoint_is_confirmed() -> None:
    # A long endpoint: the speculative reply is fully made (LLM and TTS) while the user is silent.
    async with harness(endpoint_complete_s=0.5) as h:
        await h.feed(np.concatenate([speech(0.3), silence(0.8)]), realtime=True)
        await h.until(ev.TurnMetrics)
    timeline = h.of(ev.TurnMetrics)[0].timeline_ms
    assert timeline["llm_first_token"] < timeline["endpoint"]
    assert timeline["tts_first_audio"] < timeline["endpoint"]
    assert timeline["audio_first_sent"] - timeline["endpoint"] < 30  # released at once
    # Nothing reached the client before the endpoint: SpeechStopped comes before every reply event.
    kinds = [type(e).__name__ for e in h.events]
    assert kinds.index("SpeechStopped") < kinds.index("TranscriptFinal") < kinds.index("ResponseStarted")


async def test_speculation_can_be_switched_off() -> None:
    async with harness(speculative_reply=False, endpoint_complete_s=0.5) as h:
        await h.feed(np.concatenate([speech(0.3), silence(0.8)]), realtime=True)
        await h.until(ev.TurnMetrics)
    timeline = h.of(ev.TurnMetrics)[0].timeline_ms
    assert timeline["llm_first_token"] > timeline["endpoint"]


FULL_REPLY = "You said w1 w2 w3?. That is one clause, and here is another clause for you."


async def _talk_over_the_agent(h: Harness, overlap_text: str | None, seconds: float = 0.25) -> None:
    asr = h.session.engines.asr.model
    assert isinstance(asr, FakeAsr)
    if overlap_text is not None:
        asr.overlap_texts.append(overlap_text)
    await h.feed(np.concatenate([speech(0.3), silence(0.3)]))
    await h.until(ev.ResponseAudioStarted)
    await asyncio.sleep(0.25)
    await h.feed(np.concatenate([speech(seconds), silence(1.3)]), realtime=True)


@pytest.mark.parametrize("overlap", ["Uh-huh.", "", None], ids=["backchannel", "noise", "no-words-in-time"])
async def test_speech_over_the_agent_that_is_not_an_interruption_lets_it_finish(overlap: str | None) -> None:
    async with harness(false_interruption_timeout_s=0.5) as h:
        asr = h.session.engines.asr.model
        assert isinstance(asr, FakeAsr)
        if overlap is None:
            asr.transcribe = _never_returns_words(asr.transcribe)  # type: ignore[method-assign]
        await _talk_over_the_agent(h, overlap)
        await h.until(ev.ResponseDone)
    assert not h.of(ev.AudioClear)
    (done,) = h.of(ev.ResponseDone)
    assert not done.interrupted and done.text == FULL_REPLY
    assert [m.text for m in h.session.memory.messages] == ["w1 w2 w3?", FULL_REPLY]
    assert len(h.of(ev.SpeechStarted)) == 1  # the overlap never became a turn
    # All of the reply's audio was sent: the pause lost nothing.
    audio_done = h.of(ev.ResponseAudioDone)[0]
    assert abs(sum(len(f.pcm) for f in h.frames) / 16000 - audio_done.duration_s) < 0.03


def _never_returns_words(transcribe):  # type: ignore[no-untyped-def]
    def slow(audio, *, final):  # type: ignore[no-untyped-def]
        if not final:
            raise RuntimeError("no words in time")
        return transcribe(audio, final=final)

    return slow


async def _interrupt_now(h: Harness, words: str) -> None:
    """The user talks over the agent with ``words`` (what the overlap's quick ASR pass hears)."""
    asr = h.session.engines.asr.model
    assert isinstance(asr, FakeAsr)
    asr.overlap_texts.append(words)
    await h.feed(np.concatenate([speech(0.2), silence(0.3)]), realtime=True)


def _stale_after_clear(h: Harness) -> list[ev.Event]:
    """Events of an interrupted turn sent after its audio.clear, other than its response.done."""
    stale = []
    for clear in h.of(ev.AudioClear):
        at = h.events.index(clear)
        stale += [
            e
            for e in h.events[at + 1 :]
            if e.turn_id == clear.turn_id and not (isinstance(e, ev.ResponseDone) and e.interrupted)
        ]
    return stale


async def test_an_interruption_during_the_first_clause_keeps_at_most_part_of_it() -> None:
    async with harness() as h:
        await h.feed(np.concatenate([speech(0.3), silence(0.3)]))
        await h.until(ev.ResponseAudioStarted)
        await _interrupt_now(h, "Hold on.")  # at once: the first clause lasts 0.2 s
        await h.until(ev.ResponseDone, 2)
    first, second = h.of(ev.ResponseDone)
    clause = "You said w1 w2 w3?"
    assert first.interrupted and first.turn_id == 1
    assert clause.startswith(first.text) and len(first.text) < len(clause)
    assert not second.interrupted and second.turn_id == 2
    assert [c.turn_id for c in h.of(ev.AudioClear)] == [1]
    assert not _stale_after_clear(h)
    roles = [(m.role, m.interrupted) for m in h.session.memory.messages]
    expected_cut = [("assistant", True)] if first.text else []
    assert roles == [("user", False), *expected_cut, ("user", False), ("assistant", False)]


async def test_two_interruptions_in_a_row_each_cut_their_own_reply() -> None:
    async with harness() as h:
        await h.feed(np.concatenate([speech(0.3), silence(0.3)]))
        await h.until(ev.ResponseAudioStarted)
        await asyncio.sleep(0.3)
        await _interrupt_now(h, "Wait, stop.")
        await h.until(ev.ResponseAudioStarted, 2)
        await asyncio.sleep(0.3)
        await _interrupt_now(h, "No, listen.")
        await h.until(ev.ResponseDone, 3)
    done = h.of(ev.ResponseDone)
    assert [(d.turn_id, d.interrupted) for d in done] == [(1, True), (2, True), (3, False)]
    assert [c.turn_id for c in h.of(ev.AudioClear)] == [1, 2]
    assert not _stale_after_clear(h)
    # Nothing of a cut reply was sent after its clear: the next frame is the next reply's.
    assert h.frames_when(ev.AudioClear, 1) == h.frames_when(ev.ResponseAudioStarted, 2)
    assert h.frames_when(ev.AudioClear, 2) == h.frames_when(ev.ResponseAudioStarted, 3)
    messages = [(m.role, m.text, m.interrupted) for m in h.session.memory.messages]
    assert [(r, i) for r, _, i in messages] == [
        ("user", False), ("assistant", True), ("user", False), ("assistant", True), ("user", False),
        ("assistant", False),
    ]  # fmt: skip
    assert messages[1][1] == done[0].text and messages[3][1] == done[1].text
    assert messages[5][1] == done[2].text


async def test_the_clients_playback_report_decides_what_memory_keeps() -> None:
    async with harness() as h:
        await h.feed(np.concatenate([speech(0.3), silence(0.3)]))
        await h.until(ev.ResponseAudioStarted)
        await asyncio.sleep(0.3)
        h.session.push(PlaybackIn(1, 0.1))  # the client's buffer is deep: it is far behind the server
        h.session.push(PlaybackIn(99, 5.0))  # a stale report of a turn long gone changes nothing
        await _interrupt_now(h, "Wait, stop.")
        await h.until(ev.AudioClear)
        # The estimate moved on from the report by the time since (paused time excluded).
        estimate = h.of(ev.ResponseDone)[0].text
        assert estimate.startswith("You said") and len(estimate) < len(FULL_REPLY)
        # After the clear the client says exactly where it stopped: memory follows it.
        await h.taken(PlaybackIn(1, 0.1))
        assistant = [m for m in h.session.memory.messages if m.role == "assistant"]
        assert [(m.text, m.interrupted) for m in assistant] == [("You said", True)]
        await h.taken(PlaybackIn(1, 0.0))  # it had played nothing after all
        assert all(m.role == "user" for m in h.session.memory.messages)
        await h.taken(PlaybackIn(1, 0.1))  # and back: inserted after the user message it answered
        await h.until(ev.ResponseDone, 2)
    messages = [(m.role, m.text) for m in h.session.memory.messages]
    assert messages[:2] == [("user", "w1 w2 w3?"), ("assistant", "You said")]
    assert [r for r, _ in messages[2:]] == ["user", "assistant"]


async def test_input_that_piles_up_drops_the_oldest_audio_by_duration_never_control() -> None:
    engines = fake_engines()
    frames: list[AudioFrame] = []
    session = Session(engines, fast_settings(input_queue_s=0.5), PacedOutput(16000, frames.append), print,
                      session_id="queue")  # fmt: skip
    try:
        # Not running: nothing is taken. 1 s of 10 ms frames and 1 s of 100 ms frames, a commit between.
        for _ in range(100):
            session.push(AudioIn(silence(0.01), 0.0))
        session.push(CommitIn())
        for _ in range(10):
            session.push(AudioIn(silence(0.1), 0.0))
        queued = [i for i in session._inbox if isinstance(i, AudioIn)]
        assert sum(len(i.pcm) for i in queued) <= 8000  # 0.5 s, whatever the frame length
        assert session.dropped_input_frames == 100 + 5
        assert any(isinstance(i, CommitIn) for i in session._inbox)  # control is never dropped
    finally:
        engines.close()


async def test_a_reply_that_loops_is_cut_at_a_clean_point_and_the_model_stopped() -> None:
    async with harness() as h:
        llm = h.session.engines.llm.model
        assert isinstance(llm, FakeLlm)
        llm.loop_next = True
        await h.feed(np.concatenate([speech(0.3), silence(0.4)]))
        await h.until(ev.ResponseDone)
    (done,) = h.of(ev.ResponseDone)
    assert done.text == "You said you should pack sunglasses, sunscreen." and not done.interrupted
    assert llm.tokens < 100  # it stopped soon after the loop began, not after all 500
    assert h.session.memory.messages[-1].text == done.text
