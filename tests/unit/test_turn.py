"""Turn-taking as a table: VAD frames in, actions out. 32 ms frames at 16 kHz."""

from __future__ import annotations

from agent.turn import (
    VAD_WINDOW,
    Commit,
    EndOfTurn,
    Interrupt,
    ReplyEnded,
    ReplyStarted,
    SilenceOnset,
    StartSpeech,
    StartText,
    TextTurn,
    TurnPolicy,
    TurnTaking,
    UserState,
    VadFrame,
)

POLICY = TurnPolicy(min_speech_s=0.1, endpoint_silence_s=0.3, max_utterance_s=2.0)


def drive(machine: TurnTaking, pattern: str, start: int = 0) -> list[tuple[int, object]]:
    """Feed one frame per character: '#' speech, '.' silence, 'n' speech the gate rejects (noise)."""
    out = []
    for i, ch in enumerate(pattern):
        end = (start + i + 1) * VAD_WINDOW
        frame = VadFrame(end, 0.9 if ch in "#n" else 0.05, gate=ch != "n")
        out += [(start + i, a) for a in machine.feed(frame)]
    return out


def kinds(actions: list[tuple[int, object]]) -> list[str]:
    return [type(a).__name__ for _, a in actions]


def test_short_blip_is_noise_not_a_turn() -> None:
    m = TurnTaking(POLICY)
    assert drive(m, "##" + "." * 20) == []  # 64 ms < min_speech 100 ms
    assert m.turn_id == 0


def test_speech_the_gate_rejects_does_not_start_a_turn() -> None:
    m = TurnTaking(POLICY)
    assert drive(m, "nnnnnn" + "." * 20) == []


def test_utterance_then_silence_ends_the_turn_once() -> None:
    m = TurnTaking(POLICY)
    acts = drive(m, "." * 3 + "#" * 10 + "." * 12)
    assert kinds(acts) == ["StartSpeech", "SilenceOnset", "EndOfTurn"]
    start = acts[0][1]
    assert isinstance(start, StartSpeech) and start.start_sample == 3 * VAD_WINDOW
    end = acts[-1][1]
    assert isinstance(end, EndOfTurn)
    assert end.reason == "silence" and end.end_sample == 13 * VAD_WINDOW
    # endpoint fires after 0.3 s = 9.4 frames of silence: on the 10th silent frame
    assert acts[-1][0] == 13 + 9
    assert m.state is UserState.LISTENING


def test_inner_pause_shorter_than_endpoint_resumes_the_same_turn() -> None:
    m = TurnTaking(POLICY)
    acts = drive(m, "#" * 6 + "." * 6 + "#" * 6 + "." * 12)
    assert kinds(acts) == ["StartSpeech", "SilenceOnset", "SpeechResumed", "SilenceOnset", "EndOfTurn"]
    end = acts[-1][1]
    assert isinstance(end, EndOfTurn) and end.turn_id == 1
    assert end.start_sample == 0 and end.end_sample == 18 * VAD_WINDOW
    onset = acts[1][1]
    assert isinstance(onset, SilenceOnset) and onset.end_sample == 6 * VAD_WINDOW


def test_commit_ends_the_turn_now() -> None:
    m = TurnTaking(POLICY)
    drive(m, "#" * 6)
    (end,) = m.feed(Commit())
    assert isinstance(end, EndOfTurn) and end.reason == "commit"
    assert m.feed(Commit()) == []  # nothing to end


def test_max_utterance_forces_the_end_and_waits_for_silence() -> None:
    m = TurnTaking(POLICY)
    acts = drive(m, "#" * 80)  # 2.56 s of speech, limit 2 s
    assert kinds(acts) == ["StartSpeech", "EndOfTurn"]
    end = acts[-1][1]
    assert isinstance(end, EndOfTurn) and end.reason == "max_length"
    assert m.state is UserState.DRAINING
    # Speech that goes on does not start a new turn (which would interrupt the answer) ...
    assert drive(m, "#" * 5, start=80) == []
    # ... until the user has stopped once.
    later = drive(m, "." + "#" * 4, start=85)
    assert kinds(later) == ["StartSpeech"]
    assert m.turn_id == 2


def test_speech_while_agent_replies_interrupts_that_reply() -> None:
    m = TurnTaking(POLICY)
    drive(m, "#" * 6 + "." * 12)
    assert m.feed(ReplyStarted(1)) == []
    acts = drive(m, "#" * 4, start=18)
    assert [a for _, a in acts] == [Interrupt(1), StartSpeech(2, 18 * VAD_WINDOW)]
    assert m.reply_turn is None


def test_speech_after_reply_ended_does_not_interrupt() -> None:
    m = TurnTaking(POLICY)
    drive(m, "#" * 6 + "." * 12)
    m.feed(ReplyStarted(1))
    m.feed(ReplyEnded(1))
    assert kinds(drive(m, "#" * 4, start=18)) == ["StartSpeech"]


def test_stale_reply_started_is_ignored() -> None:
    m = TurnTaking(POLICY)
    drive(m, "#" * 6 + "." * 12 + "#" * 4)  # turn 2 has started
    m.feed(ReplyStarted(1))
    assert m.reply_turn is None


def test_text_turn_gets_a_new_id_and_interrupts_a_reply() -> None:
    m = TurnTaking(POLICY)
    assert m.feed(TextTurn()) == [StartText(1)]
    m.feed(ReplyStarted(1))
    assert m.feed(TextTurn()) == [Interrupt(1), StartText(2)]


def test_release_threshold_keeps_speech_going_through_soft_frames() -> None:
    policy = TurnPolicy(threshold=0.5, release_threshold=0.3, min_speech_s=0.05, endpoint_silence_s=0.2)
    m = TurnTaking(policy)
    acts = []
    for i, p in enumerate([0.9, 0.9, 0.4, 0.4, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]):
        acts += m.feed(VadFrame((i + 1) * VAD_WINDOW, p))
    assert [type(a).__name__ for a in acts] == ["StartSpeech", "SilenceOnset", "EndOfTurn"]
