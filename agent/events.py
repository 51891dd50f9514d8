"""The closed set of events a session emits to its client. Frozen dataclasses, each with ``turn_id``.

Audio itself does not travel as an event: it goes through the session's AudioOutput (paced playout).
A transport turns each event into a wire message (streaming/protocol.py); the set is closed, so a
``match`` over ``Event`` is exhaustive and mypy checks it.

``turn_id`` counts user turns from 1; 0 marks session-level events. A reply carries the turn_id of the
user turn it answers. A client must drop any event whose turn_id is below the newest ``audio.clear``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SessionReady:
    """The session is configured; audio may flow."""

    turn_id: int
    session_id: str
    input_sample_rate: int
    output_sample_rate: int
    models: dict[str, str] = field(default_factory=dict)
    profile: str = "conversation"


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
    reason: str  # "silence" | "commit" | "max_length"


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
