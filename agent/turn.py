"""Turn-taking and endpointing as a plain object: ``feed(input) -> list of actions``. No I/O, no clock.

Time is the input stream's sample count at 16 kHz (``VAD_RATE``), so a test drives it frame by frame
and gets the same answer every run. The session executes the actions.

Every transition is a row of ``ROWS`` (user state, agent state, cue -> next state, actions); there is
no default row, an unlisted combination raises ``UnlistedTransition``, and this picture of the table is
checked against the table itself (``render_table``)::

    state         agent    cue             next                     actions
    LISTENING     IDLE     speech          ONSET|SPEAKING           StartSpeech once >= min_speech
    LISTENING     SPEAKING speech          ONSET|OVERLAP            PauseReply once >= barge_in_min
    LISTENING     any      silence         LISTENING                -
    ONSET         IDLE     speech          ONSET|SPEAKING           StartSpeech once >= min_speech
    ONSET         SPEAKING speech          ONSET|OVERLAP            PauseReply once >= barge_in_min
    ONSET         any      silence         LISTENING                - (noise: kept only to join)
    SPEAKING      any      speech          SPEAKING|DRAINING        EndOfTurn(max_length) at max_utterance
    SPEAKING      any      silence         PAUSED                   SilenceOnset (the final ASR pass starts)
    PAUSED        any      speech          SPEAKING                 SpeechResumed (speculative work is void)
    PAUSED        any      silence         PAUSED|HELD              EndOfTurn(silence) at the endpoint
    DRAINING      any      speech          DRAINING                 - (a forced end waits for silence)
    DRAINING      any      silence         LISTENING                -
    OVERLAP       any      speech          OVERLAP|SPEAKING         Interrupt, StartSpeech at barge_in_confirm
    OVERLAP       any      silence         OVERLAP_ENDED            ClassifyOverlap (what was said?)
    OVERLAP_ENDED any      speech          OVERLAP                  - (goes on)
    OVERLAP_ENDED any      silence         OVERLAP_ENDED|LISTENING  ResumeReply at false_interruption_timeout
    LISTENING     any      Commit          LISTENING                - (no turn to end)
    ONSET         any      Commit          ONSET                    - (no turn to end)
    SPEAKING      any      Commit          LISTENING                EndOfTurn(commit)
    PAUSED        any      Commit          LISTENING                EndOfTurn(commit)
    DRAINING      any      Commit          DRAINING                 - (the turn already ended)
    OVERLAP       any      Commit          OVERLAP                  - (not a turn yet)
    OVERLAP_ENDED any      Commit          OVERLAP_ENDED            - (not a turn yet)
    HELD          any      speech          HELD|SPEAKING            TurnResumed at resume_min_speech (void)
    HELD          any      silence         HELD                     - (the reply is not heard yet)
    HELD          any      Commit          HELD                     - (the turn already ended)
    PAUSED        any      TranscriptReady PAUSED|HELD              Speculate (+ EndOfTurn past the endpoint)
    LISTENING     any      TranscriptReady LISTENING                - (stale: the turn ended)
    ONSET         any      TranscriptReady ONSET                    - (stale: the turn ended)
    SPEAKING      any      TranscriptReady SPEAKING                 - (stale: the user went on)
    DRAINING      any      TranscriptReady DRAINING                 - (stale: the turn ended)
    OVERLAP       any      TranscriptReady OVERLAP                  - (stale: the turn ended)
    OVERLAP_ENDED any      TranscriptReady OVERLAP_ENDED            - (stale: the turn ended)
    HELD          any      TranscriptReady HELD                     - (stale: the turn ended)
    PAUSED        any      EotScored       PAUSED|HELD              endpoint from both signals (+ EndOfTurn)
    LISTENING     any      EotScored       LISTENING                - (stale: not this pause)
    ONSET         any      EotScored       ONSET                    - (stale: not this pause)
    SPEAKING      any      EotScored       SPEAKING                 - (stale: not this pause)
    DRAINING      any      EotScored       DRAINING                 - (stale: not this pause)
    OVERLAP       any      EotScored       OVERLAP                  - (stale: not this pause)
    OVERLAP_ENDED any      EotScored       OVERLAP_ENDED            - (stale: not this pause)
    HELD          any      EotScored       HELD                     - (stale: not this pause)
    OVERLAP_ENDED any      OverlapHeard    PAUSED|LISTENING         words: Interrupt (else ResumeReply)
    LISTENING     any      OverlapHeard    LISTENING                - (stale: already decided)
    ONSET         any      OverlapHeard    ONSET                    - (stale: already decided)
    SPEAKING      any      OverlapHeard    SPEAKING                 - (stale: already decided)
    PAUSED        any      OverlapHeard    PAUSED                   - (stale: already decided)
    DRAINING      any      OverlapHeard    DRAINING                 - (stale: already decided)
    OVERLAP       any      OverlapHeard    OVERLAP                  - (stale: the user went on)
    HELD          any      OverlapHeard    HELD                     - (stale: already decided)
    LISTENING     IDLE     TextTurn        LISTENING                StartText
    ONSET         IDLE     TextTurn        ONSET                    StartText
    SPEAKING      IDLE     TextTurn        SPEAKING                 StartText
    PAUSED        IDLE     TextTurn        PAUSED                   StartText
    DRAINING      IDLE     TextTurn        DRAINING                 StartText
    OVERLAP       IDLE     TextTurn        OVERLAP                  StartText
    OVERLAP_ENDED IDLE     TextTurn        OVERLAP_ENDED            StartText
    HELD          IDLE     TextTurn        LISTENING                StartText
    LISTENING     SPEAKING TextTurn        LISTENING                Interrupt + StartText
    ONSET         SPEAKING TextTurn        ONSET                    Interrupt + StartText
    SPEAKING      SPEAKING TextTurn        SPEAKING                 Interrupt + StartText
    PAUSED        SPEAKING TextTurn        PAUSED                   Interrupt + StartText
    DRAINING      SPEAKING TextTurn        DRAINING                 Interrupt + StartText
    OVERLAP       SPEAKING TextTurn        OVERLAP                  Interrupt + StartText
    OVERLAP_ENDED SPEAKING TextTurn        OVERLAP_ENDED            Interrupt + StartText
    HELD          SPEAKING TextTurn        LISTENING                Interrupt + StartText
    LISTENING     any      ReplyStarted    LISTENING                agent SPEAKING (the newest turn's reply)
    ONSET         any      ReplyStarted    ONSET                    agent SPEAKING (the newest turn's reply)
    SPEAKING      any      ReplyStarted    SPEAKING                 agent SPEAKING (the newest turn's reply)
    PAUSED        any      ReplyStarted    PAUSED                   agent SPEAKING (the newest turn's reply)
    DRAINING      any      ReplyStarted    DRAINING                 agent SPEAKING (the newest turn's reply)
    OVERLAP       any      ReplyStarted    OVERLAP                  agent SPEAKING (the newest turn's reply)
    OVERLAP_ENDED any      ReplyStarted    OVERLAP_ENDED            agent SPEAKING (the newest turn's reply)
    HELD          any      ReplyStarted    HELD                     agent SPEAKING (the newest turn's reply)
    LISTENING     any      ReplyEnded      LISTENING                agent IDLE (if it was that reply)
    ONSET         any      ReplyEnded      ONSET                    agent IDLE (if it was that reply)
    SPEAKING      any      ReplyEnded      SPEAKING                 agent IDLE (if it was that reply)
    PAUSED        any      ReplyEnded      PAUSED                   agent IDLE (if it was that reply)
    DRAINING      any      ReplyEnded      DRAINING                 agent IDLE (if it was that reply)
    OVERLAP       any      ReplyEnded      OVERLAP                  agent IDLE (if it was that reply)
    OVERLAP_ENDED any      ReplyEnded      OVERLAP_ENDED            agent IDLE (if it was that reply)
    HELD          any      ReplyEnded      HELD|LISTENING           agent IDLE; ended unheard: over
    HELD          any      ReplyAudible    HELD|LISTENING           - (heard: the turn is over)
    LISTENING     any      ReplyAudible    LISTENING                - (not held)
    ONSET         any      ReplyAudible    ONSET                    - (not held)
    SPEAKING      any      ReplyAudible    SPEAKING                 - (not held)
    PAUSED        any      ReplyAudible    PAUSED                   - (not held)
    DRAINING      any      ReplyAudible    DRAINING                 - (not held)
    OVERLAP       any      ReplyAudible    OVERLAP                  - (not held)
    OVERLAP_ENDED any      ReplyAudible    OVERLAP_ENDED            - (not held)

A VAD frame is speech above ``threshold`` (and the webrtcvad gate) to start, above ``release_threshold``
to go on. An onset that goes silent before it counts is forgotten, except where it began: speech that
starts within ``onset_join_s`` after one that held ``onset_join_min_s`` (or was itself joined) starts
where that one did. Over the agent's echo, the canceller and the gate cut a user into pieces ("Wait,"
... "what is the" ... "capital of Italy"): what is transcribed, the overlap and the turn, begins at
the first piece. Only the start moves: pausing the agent and confirming an interruption still count
the newest piece's own speech. While the agent speaks, speech over it pauses the agent at once;
``classify_overlap`` decides from what was said whether it was an interruption, a backchannel, echo
or noise.

The endpoint is decided by two opinions of the pause (``endpoint_s``), each an input: the transcript's
reading (``TranscriptReady``: finished, or dangling on "and", a comma, digits being read out) and the
end-of-turn model's P(complete) (``EotScored``, Smart Turn on the audio). A dangling transcript waits
``endpoint_incomplete_s``; a finished one ``endpoint_confident_s`` when the model agrees,
``endpoint_hold_s`` when it hears more coming, ``endpoint_complete_s`` without a model; before the
transcript is known, ``endpoint_silence_s``. Both opinions and the choice travel in ``EndOfTurn``.

Speculation: ``Speculate`` lets the session start the reply (LLM, TTS) on the pause's transcript while
the user is still silent, holding its events and audio; ``SpeechResumed`` voids it, with no trace on
the wire or in memory. ``EndOfTurn`` (on silence) moves to HELD: the reply goes out when its first
audio exists (``ReplyAudible``), and until then speech resumes the turn (``TurnResumed``): the held
reply is void and the user's words so far stay one turn with what follows. An endpoint that came too
early costs nothing while the reply is not yet audible.

Agent-side: ``ReplyStarted``/``ReplyEnded`` mark whether a reply is in progress; a user StartSpeech
while one is in progress also yields ``Interrupt`` for that reply's turn (barge-in is one path).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.audio import INPUT_RATE
from agent.config import TurnPolicy
from agent.events import (
    Action,
    ClassifyOverlap,
    Commit,
    EndOfTurn,
    EndReason,
    EotScored,
    Interrupt,
    OverlapHeard,
    PauseReply,
    ReplyAudible,
    ReplyEnded,
    ReplyStarted,
    ResumeReply,
    SilenceOnset,
    Speculate,
    SpeechResumed,
    StartSpeech,
    StartText,
    TextTurn,
    TranscriptReady,
    TurnInput,
    TurnResumed,
)
from agent.meaning import TranscriptReading, classify_overlap
from agent.vad.base import VadFrame

VAD_RATE = INPUT_RATE


class UserState(enum.Enum):
    LISTENING = "listening"
    ONSET = "onset"
    SPEAKING = "speaking"
    PAUSED = "paused"
    DRAINING = "draining"
    OVERLAP = "overlap"  # speaking over the agent, not yet known to be an interruption
    OVERLAP_ENDED = "overlap_ended"  # stopped speaking over the agent; waiting for what was said
    HELD = "held"  # the turn ended on silence; its reply is not audible yet (speech now resumes the turn)


class AgentState(enum.Enum):
    IDLE = "idle"
    SPEAKING = "speaking"  # a reply is in progress (ReplyStarted seen, ReplyEnded not yet)


class Cue(enum.Enum):
    """What an input is, as the table sees it (a VAD frame is speech or silence by the state's
    threshold: the release threshold while speaking, the onset threshold and the gate otherwise)."""

    SPEECH = "speech"
    SILENCE = "silence"
    COMMIT = "Commit"
    TRANSCRIPT = "TranscriptReady"
    EOT = "EotScored"
    OVERLAP_HEARD = "OverlapHeard"
    TEXT = "TextTurn"
    REPLY_STARTED = "ReplyStarted"
    REPLY_ENDED = "ReplyEnded"
    REPLY_AUDIBLE = "ReplyAudible"


class UnlistedTransition(LookupError):
    """An input in a (user state, agent state) the table has no row for: a bug in the table."""


@dataclass(frozen=True, slots=True)
class Row:
    """One row of the table: in this user state, with the agent in one of ``agents``, on this cue,
    the machine moves as ``goes_to`` says, doing ``does``, by calling ``handler``."""

    state: UserState
    agents: tuple[AgentState, ...]
    cue: Cue
    goes_to: str
    does: str
    handler: str


_U, _A, _C = UserState, AgentState, Cue


def _next_after_text(state: UserState) -> str:
    """A text turn ends a held turn (its reply is interrupted); other states go on."""
    return "LISTENING" if state is UserState.HELD else state.name


_IDLE, _SPEAKING, _ANY = (_A.IDLE,), (_A.SPEAKING,), (_A.IDLE, _A.SPEAKING)

# Every transition, in one place: one row per user state; there is no default row, and
# tests/unit/test_turn.py checks that every (state, agent state, cue) has exactly one.
ROWS: tuple[Row, ...] = (
    # fmt: off
    Row(_U.LISTENING, _IDLE, _C.SPEECH, "ONSET|SPEAKING", "StartSpeech once >= min_speech", "_onset"),
    Row(_U.LISTENING, _SPEAKING, _C.SPEECH, "ONSET|OVERLAP", "PauseReply once >= barge_in_min", "_onset"),
    Row(_U.LISTENING, _ANY, _C.SILENCE, "LISTENING", "-", "_nothing"),
    Row(_U.ONSET, _IDLE, _C.SPEECH, "ONSET|SPEAKING", "StartSpeech once >= min_speech", "_onset_more"),
    Row(_U.ONSET, _SPEAKING, _C.SPEECH, "ONSET|OVERLAP", "PauseReply once >= barge_in_min", "_onset_more"),
    Row(_U.ONSET, _ANY, _C.SILENCE, "LISTENING", "- (noise: kept only to join)", "_noise"),
    Row(
        _U.SPEAKING,
        _ANY,
        _C.SPEECH,
        "SPEAKING|DRAINING",
        "EndOfTurn(max_length) at max_utterance",
        "_speech_on",
    ),
    Row(
        _U.SPEAKING, _ANY, _C.SILENCE, "PAUSED", "SilenceOnset (the final ASR pass starts)", "_silence_onset"
    ),
    Row(_U.PAUSED, _ANY, _C.SPEECH, "SPEAKING", "SpeechResumed (speculative work is void)", "_resumed"),
    Row(
        _U.PAUSED,
        _ANY,
        _C.SILENCE,
        "PAUSED|HELD",
        "EndOfTurn(silence) at the endpoint",
        "_pause_goes_on",
    ),
    Row(_U.DRAINING, _ANY, _C.SPEECH, "DRAINING", "- (a forced end waits for silence)", "_nothing"),
    Row(_U.DRAINING, _ANY, _C.SILENCE, "LISTENING", "-", "_drained"),
    Row(
        _U.OVERLAP,
        _ANY,
        _C.SPEECH,
        "OVERLAP|SPEAKING",
        "Interrupt, StartSpeech at barge_in_confirm",
        "_overlap_on",
    ),
    Row(_U.OVERLAP, _ANY, _C.SILENCE, "OVERLAP_ENDED", "ClassifyOverlap (what was said?)", "_overlap_ended"),
    Row(_U.OVERLAP_ENDED, _ANY, _C.SPEECH, "OVERLAP", "- (goes on)", "_overlap_resumed"),
    Row(
        _U.OVERLAP_ENDED,
        _ANY,
        _C.SILENCE,
        "OVERLAP_ENDED|LISTENING",
        "ResumeReply at false_interruption_timeout",
        "_overlap_waits",
    ),
    Row(_U.LISTENING, _ANY, _C.COMMIT, "LISTENING", "- (no turn to end)", "_nothing"),
    Row(_U.ONSET, _ANY, _C.COMMIT, "ONSET", "- (no turn to end)", "_nothing"),
    Row(_U.SPEAKING, _ANY, _C.COMMIT, "LISTENING", "EndOfTurn(commit)", "_commit"),
    Row(_U.PAUSED, _ANY, _C.COMMIT, "LISTENING", "EndOfTurn(commit)", "_commit"),
    Row(_U.DRAINING, _ANY, _C.COMMIT, "DRAINING", "- (the turn already ended)", "_nothing"),
    Row(_U.OVERLAP, _ANY, _C.COMMIT, "OVERLAP", "- (not a turn yet)", "_nothing"),
    Row(_U.OVERLAP_ENDED, _ANY, _C.COMMIT, "OVERLAP_ENDED", "- (not a turn yet)", "_nothing"),
    Row(
        _U.HELD,
        _ANY,
        _C.SPEECH,
        "HELD|SPEAKING",
        "TurnResumed at resume_min_speech (void)",
        "_held_speech",
    ),
    Row(_U.HELD, _ANY, _C.SILENCE, "HELD", "- (the reply is not heard yet)", "_held_silence"),
    Row(_U.HELD, _ANY, _C.COMMIT, "HELD", "- (the turn already ended)", "_nothing"),
    Row(
        _U.PAUSED,
        _ANY,
        _C.TRANSCRIPT,
        "PAUSED|HELD",
        "Speculate (+ EndOfTurn past the endpoint)",
        "_transcript",
    ),
    Row(_U.LISTENING, _ANY, _C.TRANSCRIPT, "LISTENING", "- (stale: the turn ended)", "_nothing"),
    Row(_U.ONSET, _ANY, _C.TRANSCRIPT, "ONSET", "- (stale: the turn ended)", "_nothing"),
    Row(_U.SPEAKING, _ANY, _C.TRANSCRIPT, "SPEAKING", "- (stale: the user went on)", "_nothing"),
    Row(_U.DRAINING, _ANY, _C.TRANSCRIPT, "DRAINING", "- (stale: the turn ended)", "_nothing"),
    Row(_U.OVERLAP, _ANY, _C.TRANSCRIPT, "OVERLAP", "- (stale: the turn ended)", "_nothing"),
    Row(_U.OVERLAP_ENDED, _ANY, _C.TRANSCRIPT, "OVERLAP_ENDED", "- (stale: the turn ended)", "_nothing"),
    Row(_U.HELD, _ANY, _C.TRANSCRIPT, "HELD", "- (stale: the turn ended)", "_nothing"),
    Row(
        _U.PAUSED,
        _ANY,
        _C.EOT,
        "PAUSED|HELD",
        "endpoint from both signals (+ EndOfTurn)",
        "_eot_scored",
    ),
    *(
        Row(u, _ANY, _C.EOT, u.name, "- (stale: not this pause)", "_nothing")
        for u in UserState
        if u is not _U.PAUSED
    ),
    Row(
        _U.OVERLAP_ENDED,
        _ANY,
        _C.OVERLAP_HEARD,
        "PAUSED|LISTENING",
        "words: Interrupt (else ResumeReply)",
        "_overlap_heard",
    ),
    Row(_U.LISTENING, _ANY, _C.OVERLAP_HEARD, "LISTENING", "- (stale: already decided)", "_nothing"),
    Row(_U.ONSET, _ANY, _C.OVERLAP_HEARD, "ONSET", "- (stale: already decided)", "_nothing"),
    Row(_U.SPEAKING, _ANY, _C.OVERLAP_HEARD, "SPEAKING", "- (stale: already decided)", "_nothing"),
    Row(_U.PAUSED, _ANY, _C.OVERLAP_HEARD, "PAUSED", "- (stale: already decided)", "_nothing"),
    Row(_U.DRAINING, _ANY, _C.OVERLAP_HEARD, "DRAINING", "- (stale: already decided)", "_nothing"),
    Row(_U.OVERLAP, _ANY, _C.OVERLAP_HEARD, "OVERLAP", "- (stale: the user went on)", "_nothing"),
    Row(_U.HELD, _ANY, _C.OVERLAP_HEARD, "HELD", "- (stale: already decided)", "_nothing"),
    *(Row(u, _IDLE, _C.TEXT, _next_after_text(u), "StartText", "_text") for u in UserState),
    *(Row(u, _SPEAKING, _C.TEXT, _next_after_text(u), "Interrupt + StartText", "_text") for u in UserState),
    *(
        Row(u, _ANY, _C.REPLY_STARTED, u.name, "agent SPEAKING (the newest turn's reply)", "_reply_started")
        for u in UserState
    ),
    *(
        Row(u, _ANY, _C.REPLY_ENDED, u.name, "agent IDLE (if it was that reply)", "_reply_ended")
        for u in UserState
        if u is not _U.HELD
    ),
    Row(_U.HELD, _ANY, _C.REPLY_ENDED, "HELD|LISTENING", "agent IDLE; ended unheard: over", "_held_ended"),
    Row(_U.HELD, _ANY, _C.REPLY_AUDIBLE, "HELD|LISTENING", "- (heard: the turn is over)", "_audible"),
    *(
        Row(u, _ANY, _C.REPLY_AUDIBLE, u.name, "- (not held)", "_nothing")
        for u in UserState
        if u is not _U.HELD
    ),
    # fmt: on
)


def _index(rows: tuple[Row, ...]) -> dict[tuple[UserState, AgentState, Cue], Row]:
    table: dict[tuple[UserState, AgentState, Cue], Row] = {}
    for row in rows:
        for agent in row.agents:
            key = (row.state, agent, row.cue)
            if key in table:
                raise ValueError(f"two rows for {key}")
            table[key] = row
    return table


TABLE = _index(ROWS)


def render_table() -> str:
    """The table as the module docstring shows it (a test keeps the two equal)."""
    lines = [f"    {'state':<14}{'agent':<9}{'cue':<16}{'next':<25}actions"]
    for row in ROWS:
        agents = "any" if row.agents == _ANY else row.agents[0].name
        lines.append(f"    {row.state.name:<14}{agents:<9}{row.cue.value:<16}{row.goes_to:<25}{row.does}")
    return "\n".join(lines)


class TurnTaking:
    """The state machine. ``turn_id`` is the newest user turn (0 before the first)."""

    def __init__(self, policy: TurnPolicy | None = None) -> None:
        self.policy = policy or TurnPolicy()
        self.state = UserState.LISTENING
        self.turn_id = 0
        self.reply_turn: int | None = None  # the turn whose reply is in progress
        self._onset_start = 0  # where the speech that is starting began (joined fragments: the first's)
        self._onset_own_start = 0  # ... this fragment's own start
        self._onset_samples = 0
        self._onset_end = 0
        self._fragment = (0, -(1 << 40))  # the latest onset forgotten as noise: (start, end)
        self._speech_start = 0
        self._speech_end = 0
        self._silence_samples = 0
        self._resume_samples = 0  # speech heard while HELD
        # The current pause's two opinions: the transcript's reading and the end-of-turn model's.
        self._reading: TranscriptReading | None = None
        self._acoustic: float | None = None
        self._endpoint_s = self.policy.endpoint_silence_s  # of the current pause

    @property
    def speech_start_sample(self) -> int:
        return self._speech_start

    @property
    def speech_end_sample(self) -> int:
        return self._speech_end

    @property
    def agent(self) -> AgentState:
        return AgentState.IDLE if self.reply_turn is None else AgentState.SPEAKING

    def feed(self, item: TurnInput) -> list[Action]:
        """One input -> the actions it calls for, by the table's row for (state, agent, cue)."""
        key = (self.state, self.agent, self._cue(item))
        row = TABLE.get(key)
        if row is None:
            raise UnlistedTransition(f"no row for {key[0].name}, agent {key[1].name}, {key[2].value}")
        handler: Callable[[Any], list[Action]] = getattr(self, row.handler)
        return handler(item)

    def _cue(self, item: TurnInput) -> Cue:
        match item:
            case VadFrame():
                return Cue.SPEECH if self._is_speech(item) else Cue.SILENCE
            case Commit():
                return Cue.COMMIT
            case TranscriptReady():
                return Cue.TRANSCRIPT
            case EotScored():
                return Cue.EOT
            case OverlapHeard():
                return Cue.OVERLAP_HEARD
            case TextTurn():
                return Cue.TEXT
            case ReplyStarted():
                return Cue.REPLY_STARTED
            case ReplyEnded():
                return Cue.REPLY_ENDED
            case ReplyAudible():
                return Cue.REPLY_AUDIBLE

    def _is_speech(self, frame: VadFrame) -> bool:
        if self.state in (UserState.SPEAKING, UserState.DRAINING):
            return frame.probability >= self.policy.release_threshold
        return frame.probability >= self.policy.threshold and frame.gate

    # -- the handlers the table names -------------------------------------------------------------
    def _nothing(self, _: TurnInput) -> list[Action]:
        return []

    def _onset(self, frame: VadFrame) -> list[Action]:
        self.state = UserState.ONSET
        self._onset_own_start = frame.end_sample - frame.samples
        self._onset_start = self._onset_own_start
        if self._onset_own_start - self._fragment[1] <= self.policy.onset_join_s * VAD_RATE:
            self._onset_start = self._fragment[0]  # the speech began with the forgotten fragment
        self._onset_samples = frame.samples
        self._onset_end = frame.end_sample
        return self._maybe_start(frame)

    def _onset_more(self, frame: VadFrame) -> list[Action]:
        self._onset_samples += frame.samples
        self._onset_end = frame.end_sample
        return self._maybe_start(frame)

    def _noise(self, _: VadFrame) -> list[Action]:
        self.state = UserState.LISTENING
        joined = self._onset_start != self._onset_own_start
        if joined or self._onset_samples >= self.policy.onset_join_min_s * VAD_RATE:
            self._fragment = (self._onset_start, self._onset_end)
        return []

    def _speech_on(self, frame: VadFrame) -> list[Action]:
        self._speech_end = frame.end_sample
        if frame.end_sample - self._speech_start >= self.policy.max_utterance_s * VAD_RATE:
            return [self._end("max_length", UserState.DRAINING)]
        return []

    def _silence_onset(self, frame: VadFrame) -> list[Action]:
        self.state = UserState.PAUSED
        self._silence_samples = frame.samples
        self._reading, self._acoustic = None, None
        self._endpoint_s = endpoint_s(self.policy, None, None)
        return [SilenceOnset(self.turn_id, self._speech_start, self._speech_end)]

    def _resumed(self, frame: VadFrame) -> list[Action]:
        self.state = UserState.SPEAKING
        self._speech_end = frame.end_sample
        return [SpeechResumed(self.turn_id)]

    def _pause_goes_on(self, frame: VadFrame) -> list[Action]:
        self._silence_samples += frame.samples
        return self._endpoint_reached()

    def _endpoint_reached(self) -> list[Action]:
        if self._silence_samples >= self._endpoint_s * VAD_RATE:
            self._resume_samples = 0
            return [self._end("silence", UserState.HELD)]
        return []

    def _held_speech(self, frame: VadFrame) -> list[Action]:
        self._resume_samples += frame.samples
        if self._resume_samples < self.policy.resume_min_speech_s * VAD_RATE:
            return []
        self.state = UserState.SPEAKING
        self._speech_end = frame.end_sample
        return [TurnResumed(self.turn_id)]

    def _held_silence(self, _: VadFrame) -> list[Action]:
        self._resume_samples = 0
        return []

    def _held_ended(self, ended: ReplyEnded) -> list[Action]:
        if self.reply_turn == ended.turn_id:
            self.reply_turn = None
            self.state = UserState.LISTENING
        return []

    def _audible(self, audible: ReplyAudible) -> list[Action]:
        if audible.turn_id == self.turn_id:
            self.state = UserState.LISTENING
        return []

    def _drained(self, _: VadFrame) -> list[Action]:
        self.state = UserState.LISTENING
        return []

    def _overlap_on(self, frame: VadFrame) -> list[Action]:
        self._speech_end = frame.end_sample
        if frame.end_sample - self._onset_own_start >= self.policy.barge_in_confirm_s * VAD_RATE:
            return self._confirm_interruption(frame.end_sample)
        return []

    def _overlap_ended(self, frame: VadFrame) -> list[Action]:
        self.state = UserState.OVERLAP_ENDED
        self._silence_samples = frame.samples
        return [ClassifyOverlap(self._onset_start, self._speech_end)]

    def _overlap_resumed(self, frame: VadFrame) -> list[Action]:
        self.state = UserState.OVERLAP
        self._speech_end = frame.end_sample
        return []

    def _overlap_waits(self, frame: VadFrame) -> list[Action]:
        self._silence_samples += frame.samples
        if self._silence_samples >= self.policy.false_interruption_timeout_s * VAD_RATE:
            return self._resume_reply()
        return []

    def _commit(self, _: Commit) -> list[Action]:
        return [self._end("commit", UserState.LISTENING)]

    def _text(self, _: TextTurn) -> list[Action]:
        if self.state is UserState.HELD:
            self.state = UserState.LISTENING
        self.turn_id += 1
        return [*self._interrupt_reply(), StartText(self.turn_id)]

    def _reply_started(self, started: ReplyStarted) -> list[Action]:
        if started.turn_id == self.turn_id:
            self.reply_turn = started.turn_id
        return []

    def _reply_ended(self, ended: ReplyEnded) -> list[Action]:
        if self.reply_turn == ended.turn_id:
            self.reply_turn = None
        return []

    # -- barge-in ---------------------------------------------------------------------------------
    def _overlap_heard(self, heard: OverlapHeard) -> list[Action]:
        if (heard.start_sample, heard.end_sample) != (self._onset_start, self._speech_end):
            return []  # stale: the user went on speaking, or it was already decided
        # As long as the newest piece: pieces joined before it make the transcript whole, not the
        # overlap longer (a short wordless one stays a backchannel however it was joined).
        duration_s = (heard.end_sample - self._onset_own_start) / VAD_RATE
        verdict = classify_overlap(
            heard.text,
            duration_s,
            self.policy,
            heard.agent_text,
            heard.avg_logprob,
            heard.tilt_db,
            heard.louder_than_echo_s,
        )
        if verdict != "interruption":
            return self._resume_reply()
        actions = self._confirm_interruption(heard.end_sample)
        self.state = UserState.PAUSED
        return [*actions, SilenceOnset(self.turn_id, self._speech_start, self._speech_end)]

    def _confirm_interruption(self, end_sample: int) -> list[Action]:
        self.state = UserState.SPEAKING
        self.turn_id += 1
        self._speech_start = self._onset_start
        self._speech_end = end_sample
        return [*self._interrupt_reply(), StartSpeech(self.turn_id, self._speech_start)]

    def _resume_reply(self) -> list[Action]:
        self.state = UserState.LISTENING
        return [ResumeReply(self.reply_turn)] if self.reply_turn is not None else []

    def _transcript(self, ready: TranscriptReady) -> list[Action]:
        current = (self.turn_id, self._speech_start, self._speech_end)
        if (ready.turn_id, ready.start_sample, ready.end_sample) != current:
            return []  # stale: the user went on, or the turn already ended
        self._reading = ready.reading
        self._endpoint_s = endpoint_s(self.policy, self._reading, self._acoustic)
        return [Speculate(*current), *self._endpoint_reached()]

    def _eot_scored(self, scored: EotScored) -> list[Action]:
        if (scored.turn_id, scored.start_sample, scored.end_sample) != (
            self.turn_id,
            self._speech_start,
            self._speech_end,
        ):
            return []  # stale: the user went on
        self._acoustic = scored.probability
        self._endpoint_s = endpoint_s(self.policy, self._reading, self._acoustic)
        return self._endpoint_reached()

    def _maybe_start(self, frame: VadFrame) -> list[Action]:
        if self.reply_turn is not None:  # the agent is speaking: maybe a barge-in
            if self._onset_samples < self.policy.barge_in_min_speech_s * VAD_RATE:
                return []
            self.state = UserState.OVERLAP
            self._speech_end = frame.end_sample
            return [PauseReply(self.reply_turn)]
        if self._onset_samples < self.policy.min_speech_s * VAD_RATE:
            return []
        self.state = UserState.SPEAKING
        self.turn_id += 1
        self._speech_start = self._onset_start
        self._speech_end = frame.end_sample
        return [*self._interrupt_reply(), StartSpeech(self.turn_id, self._speech_start)]

    def _interrupt_reply(self) -> list[Action]:
        if self.reply_turn is None:
            return []
        tid, self.reply_turn = self.reply_turn, None
        return [Interrupt(tid)]

    def _end(self, reason: EndReason, next_state: UserState) -> EndOfTurn:
        self.state = next_state
        if reason != "silence":
            return EndOfTurn(self.turn_id, self._speech_start, self._speech_end, reason)
        return EndOfTurn(
            self.turn_id,
            self._speech_start,
            self._speech_end,
            reason,
            self._reading,
            self._acoustic,
            self._endpoint_s,
        )


def endpoint_s(policy: TurnPolicy, reading: TranscriptReading | None, acoustic: float | None) -> float:
    """The silence that ends a turn, from the pause's two opinions: the transcript's reading
    (None: not known yet) and the end-of-turn model's P(complete) (None: not known, or no model).

    A dangling transcript always waits long (the model hears "and"/"because" too, but judged most
    hesitation pauses complete); a finished one ends at once when the model agrees, waits long when
    the model hears more coming, and waits the plain "complete" bound without a model. A brief one
    ("I need a table.", "Book a flight.": a short statement, not a question or a yes/no) waits long
    whatever the model says: the model hears a finished sentence there (0.96), but speakers often go
    on ("... For four people at eight."), and a reply read during the pause is audible the moment the
    endpoint fires, so a shorter bound answers inside a 0.7 s pause.
    """
    more = acoustic is not None and acoustic < policy.eot_threshold
    if reading == "dangling":
        return policy.endpoint_incomplete_s
    if reading == "brief":
        return policy.endpoint_hold_s
    if reading is None:
        return max(policy.endpoint_silence_s, policy.endpoint_hold_s) if more else policy.endpoint_silence_s
    if acoustic is None:
        return policy.endpoint_complete_s
    return policy.endpoint_hold_s if more else policy.endpoint_confident_s
