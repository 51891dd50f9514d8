"""The session's vocabulary: what goes in (``Input``) and what comes out (``Event``, ``AudioFrame``).

Both are closed unions of frozen dataclasses, so a ``match`` over them is exhaustive and mypy checks
it. A transport's codec (streaming/protocols/) maps wire messages to inputs and outputs to wire
messages; nothing else crosses between a transport and a session.

``turn_id`` counts user turns from 1; 0 marks session-level events. A reply carries the turn_id of the
user turn it answers. A client must drop any event whose turn_id is below the newest ``audio.clear``;
the session itself never emits one (agent/session.py: ``Outbox``, the one stale-turn rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from agent.audio import Pcm
from agent.config import SessionOptions
from agent.meaning import TranscriptReading
from agent.vad.base import VadFrame

EndReason = Literal["silence", "commit", "max_length"]


# -- inputs -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, eq=False)
class AudioIn:
    """User audio at 16 kHz (agent.audio.INPUT_RATE); ``received_at`` is when the transport got it."""

    pcm: Pcm
    received_at: float


@dataclass(frozen=True, slots=True)
class CommitIn:
    """The user's turn is over now (push-to-talk release), after the audio sent before it."""


@dataclass(frozen=True, slots=True)
class TextIn:
    """A typed user message (answered by the LLM); with ``verbatim`` a line the agent says as it is."""

    text: str
    verbatim: bool = False


@dataclass(frozen=True, slots=True)
class CancelIn:
    """Stop the agent now (a client's interrupt button): the same path as a barge-in."""


@dataclass(frozen=True, slots=True)
class PlaybackIn:
    """The client has played ``played_s`` seconds of ``turn_id``'s audio (what the user heard)."""

    turn_id: int
    played_s: float


@dataclass(frozen=True, slots=True)
class DtmfIn:
    """A key the caller pressed: 0-9, *, # or A-D."""

    digit: str


@dataclass(frozen=True, slots=True)
class ConfigureIn:
    """Per-session options (profile, instructions, voice, greeting); a field left None is unchanged."""

    options: SessionOptions


Input = AudioIn | CommitIn | TextIn | CancelIn | PlaybackIn | DtmfIn | ConfigureIn


# -- outputs ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, eq=False)
class AudioFrame:
    """One frame of agent audio as it leaves for the client, at the transport's rate."""

    turn_id: int
    pcm: Pcm
    sample_rate: int
    pts: int  # samples sent on this output before this frame


@dataclass(frozen=True, slots=True)
class SessionReady:
    """The session is configured (the first ``ConfigureIn`` applied); audio may flow. The transport
    fills in the sample rates it speaks on the wire."""

    turn_id: int
    session_id: str
    input_sample_rate: int
    output_sample_rate: int
    models: dict[str, str] = field(default_factory=dict)
    profile: str = "conversation"
    voice: str = ""  # the voice replies are spoken in
    voices: tuple[str, ...] = ()  # every voice a session.update may choose (GET /v1/voices describes them)


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The user started speaking; ``audio_s`` is the position in the input stream."""

    turn_id: int
    audio_s: float


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    """The user's turn ended (endpoint): ``audio_s`` is where speech ended, ``reason`` why it ended."""

    turn_id: int
    audio_s: float
    reason: EndReason


@dataclass(frozen=True, slots=True)
class TranscriptPartial:
    turn_id: int
    text: str


@dataclass(frozen=True, slots=True)
class TranscriptFinal:
    turn_id: int
    text: str
    duration_s: float


@dataclass(frozen=True, slots=True)
class ResponseStarted:
    turn_id: int


@dataclass(frozen=True, slots=True)
class ResponseTextDelta:
    """Reply text as the LLM writes it."""

    turn_id: int
    text: str


@dataclass(frozen=True, slots=True)
class ResponseAudioStarted:
    """The first agent audio of this reply was handed to the transport."""

    turn_id: int
    sample_rate: int


@dataclass(frozen=True, slots=True)
class ResponseAudioDone:
    turn_id: int
    duration_s: float


@dataclass(frozen=True, slots=True)
class ResponseDone:
    """The reply is over: ``text`` is what the agent said (all of it, or up to the interruption)."""

    turn_id: int
    text: str
    interrupted: bool


@dataclass(frozen=True, slots=True)
class AudioClear:
    """Drop every buffered agent audio sample now (barge-in); events of older turns are stale."""

    turn_id: int


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    """The caller pressed a key (telephony): ``digit`` is 0-9, *, # or A-D. For IVR and tutoring flows."""

    turn_id: int
    digit: str


@dataclass(frozen=True, slots=True)
class TurnMetrics:
    """Server-side timeline of one turn.

    ``timeline_ms``: milliseconds after the server received the input frame holding the user's last
    speech sample, for each stage's first output (keys in STAGE_ORDER; a stage that did not run is
    absent). ``durations_ms``: how long each model call took.
    """

    turn_id: int
    timeline_ms: dict[str, float]
    durations_ms: dict[str, float]
    endpointing: dict[str, Any] = field(default_factory=dict)  # the signals and the endpoint chosen


@dataclass(frozen=True, slots=True)
class Error:
    """Something went wrong; ``fatal`` errors close the session, others leave it serving."""

    turn_id: int
    code: str
    message: str
    fatal: bool = False


Event = (
    SessionReady
    | SpeechStarted
    | SpeechStopped
    | TranscriptPartial
    | TranscriptFinal
    | ResponseStarted
    | ResponseTextDelta
    | ResponseAudioStarted
    | ResponseAudioDone
    | ResponseDone
    | AudioClear
    | DtmfReceived
    | TurnMetrics
    | Error
)
Output = Event | AudioFrame


# -- turn-taking: its inputs and its actions (inside a session; agent/turn.py) -----------------------
@dataclass(frozen=True, slots=True)
class Commit:
    """The client says the user's turn is over now (push-to-talk release)."""


@dataclass(frozen=True, slots=True)
class TranscriptReady:
    """The ASR pass started at ``SilenceOnset`` for [start, end) is done."""

    turn_id: int
    start_sample: int
    end_sample: int
    reading: TranscriptReading  # agent/meaning.py: transcript_reading


@dataclass(frozen=True, slots=True)
class EotScored:
    """The end-of-turn model's P(complete) for the pause of [start, end) (asked at ``SilenceOnset``)."""

    turn_id: int
    start_sample: int
    end_sample: int
    probability: float


@dataclass(frozen=True, slots=True)
class ReplyAudible:
    """The held reply of ``turn_id`` is going out: its first audio exists (or it ended without any)."""

    turn_id: int


@dataclass(frozen=True, slots=True)
class OverlapHeard:
    """The transcript of speech over the agent, [start, end)."""

    start_sample: int
    end_sample: int
    text: str
    agent_text: str = ""  # what the agent was saying around then (its own words, heard back = echo)
    avg_logprob: float | None = None  # the ASR's confidence that those were words (agent/asr/base.py)
    tilt_db: float | None = None  # high against low frequencies (agent/hearing.py): a closed-mouth hum?
    # The longest stretch louder than the agent's echo could be (agent/aec.py); None: no echo heard.
    louder_than_echo_s: float | None = None


@dataclass(frozen=True, slots=True)
class TextTurn:
    """A turn that arrives as text (typed by the user, or a scripted line for the agent to say)."""


@dataclass(frozen=True, slots=True)
class ReplyStarted:
    turn_id: int


@dataclass(frozen=True, slots=True)
class ReplyEnded:
    turn_id: int


TurnInput = (
    VadFrame
    | Commit
    | TranscriptReady
    | EotScored
    | OverlapHeard
    | TextTurn
    | ReplyStarted
    | ReplyEnded
    | ReplyAudible
)


@dataclass(frozen=True, slots=True)
class StartSpeech:
    turn_id: int
    start_sample: int


@dataclass(frozen=True, slots=True)
class SilenceOnset:
    """Speech paused at ``end_sample``: the transcript of [start, end) will not change unless it resumes."""

    turn_id: int
    start_sample: int
    end_sample: int


@dataclass(frozen=True, slots=True)
class SpeechResumed:
    turn_id: int


@dataclass(frozen=True, slots=True)
class Speculate:
    """Start the reply to [start, end) now, held until its EndOfTurn (or voided by SpeechResumed)."""

    turn_id: int
    start_sample: int
    end_sample: int


@dataclass(frozen=True, slots=True)
class EndOfTurn:
    turn_id: int
    start_sample: int
    end_sample: int  # end of the last speech frame
    reason: EndReason
    # What decided it (turn.metrics reports them): the transcript's reading, the end-of-turn model's
    # P(complete) (None: not known by then, or no model), and the silence the endpoint asked for.
    transcript: TranscriptReading | None = None
    acoustic: float | None = None
    endpoint_s: float = 0.0


@dataclass(frozen=True, slots=True)
class TurnResumed:
    """The user spoke again after the endpoint, before the reply was heard: the turn goes on and the
    held reply is void (nothing of it reached the client or memory)."""

    turn_id: int


@dataclass(frozen=True, slots=True)
class StartText:
    """A text turn got ``turn_id``; the session answers (or says) it."""

    turn_id: int


@dataclass(frozen=True, slots=True)
class PauseReply:
    """Stop sending the reply's audio now, keeping it: the user may only be saying "uh-huh"."""

    turn_id: int


@dataclass(frozen=True, slots=True)
class ResumeReply:
    """Go on with the paused reply from where it stopped."""

    turn_id: int


@dataclass(frozen=True, slots=True)
class ClassifyOverlap:
    """Transcribe [start, end) and feed back OverlapHeard."""

    start_sample: int
    end_sample: int


@dataclass(frozen=True, slots=True)
class Interrupt:
    """Stop the reply of ``turn_id`` now: cancel its work and clear its audio down to the client."""

    turn_id: int


Action = (
    StartSpeech
    | SilenceOnset
    | SpeechResumed
    | Speculate
    | EndOfTurn
    | TurnResumed
    | StartText
    | Interrupt
    | PauseReply
    | ResumeReply
    | ClassifyOverlap
)


# The stages of TurnMetrics.timeline_ms, in the order they must happen (each waits for the one before).
STAGE_ORDER = (
    "speech_end",  # server received the frame holding the last speech sample (0 by definition)
    "asr_final",  # final transcript ready
    "llm_first_token",
    "first_clause",  # first complete clause handed to TTS
    "tts_first_audio",  # TTS produced the first clause's audio
    "audio_first_sent",  # first agent audio frame written to the transport
)
# "endpoint" (the turn was declared over) lies between speech_end and audio_first_sent. With the
# speculative pipeline it may come after asr_final, or even after tts_first_audio: the reply's audio is
# made while the user is silent and held until the endpoint.
ENDPOINT = "endpoint"
STAGES = (STAGE_ORDER[0], ENDPOINT, *STAGE_ORDER[1:])  # for reports
