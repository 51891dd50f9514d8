"""Turn-taking and endpointing as a plain object: ``feed(input) -> list of actions``. No I/O, no clock.

Time is the input stream's sample count at 16 kHz (``VAD_RATE``), so a test drives it frame by frame
and gets the same answer every run. The session executes the actions.

User-side states and what moves them (one row per transition, in ``_on_vad``)::

    LISTENING     speech frame               -> ONSET          (candidate start remembered)
    ONSET         speech frames >= min_speech -> SPEAKING       StartSpeech (+ Interrupt if agent busy)
    ONSET         silence frame              -> LISTENING      (noise: forgotten)
    SPEAKING      silence frame              -> PAUSED         SilenceOnset  (the ASR pass starts)
    SPEAKING      utterance >= max_utterance -> DRAINING       EndOfTurn(reason="max_length")
    PAUSED        TranscriptReady (current)  -> PAUSED         Speculate (+ EndOfTurn if past its endpoint)
    PAUSED        speech frame               -> SPEAKING       SpeechResumed (speculative work is void)
    PAUSED        silence >= endpoint        -> LISTENING      EndOfTurn(reason="silence")
  while the agent is speaking (barge-in, decided by classify_overlap):
    ONSET         speech >= barge_in_min     -> OVERLAP        PauseReply (the agent stops at once)
    OVERLAP       speech >= barge_in_confirm -> SPEAKING       Interrupt + StartSpeech
    OVERLAP       silence frame              -> OVERLAP_ENDED  ClassifyOverlap (what was said?)
    OVERLAP_ENDED speech frame               -> OVERLAP        (goes on)
    OVERLAP_ENDED OverlapHeard: words        -> PAUSED         Interrupt + StartSpeech + SilenceOnset
    OVERLAP_ENDED OverlapHeard: backchannel/noise -> LISTENING ResumeReply (the agent goes on)
    OVERLAP_ENDED silence >= false_interruption_timeout -> LISTENING  ResumeReply
    SPEAKING/PAUSED  Commit                  -> LISTENING      EndOfTurn(reason="commit")
    any           TextTurn                   -> (unchanged)    StartText (+ Interrupt if agent busy)
    DRAINING      silence frame              -> LISTENING      (a forced end waits for the user to stop)

The endpoint is adaptive. Until the transcript of the pause is known it is ``endpoint_silence_s``; once
it is known, ``endpoint_complete_s`` when the transcript reads as a finished sentence, else
``endpoint_incomplete_s`` (a trailing "and", a comma: the user is likely to go on).

Speculation: ``Speculate`` lets the session start the reply (LLM, TTS) on the pause's transcript while
the user is still silent, holding its events and audio. ``EndOfTurn`` for the same span releases it at
once; ``SpeechResumed`` voids it, with no trace on the wire or in memory.

Agent-side: ``ReplyStarted``/``ReplyEnded`` mark whether a reply is in progress; a user StartSpeech
while one is in progress also yields ``Interrupt`` for that reply's turn (barge-in is one path).
"""

from __future__ import annotations

import dataclasses
import enum
import re
from dataclasses import dataclass
from typing import Any

VAD_RATE = 16_000
VAD_WINDOW = 512  # Silero's window at 16 kHz: 32 ms


class UserState(enum.Enum):
    LISTENING = "listening"
    ONSET = "onset"
    SPEAKING = "speaking"
    PAUSED = "paused"
    DRAINING = "draining"
    OVERLAP = "overlap"  # speaking over the agent, not yet known to be an interruption
    OVERLAP_ENDED = "overlap_ended"  # stopped speaking over the agent; waiting for what was said


@dataclass(frozen=True, slots=True)
class TurnPolicy:
    """Thresholds, in the units the machine counts (probability, seconds)."""

    threshold: float = 0.5
    release_threshold: float = 0.35
    min_speech_s: float = 0.12
    endpoint_silence_s: float = 0.7  # while the pause's transcript is not known yet
    endpoint_complete_s: float = 0.5  # the transcript is a finished sentence
    endpoint_incomplete_s: float = 1.0  # the transcript dangles
    max_utterance_s: float = 30.0
    barge_in_min_speech_s: float = 0.1  # speech over the agent this long pauses it
    barge_in_confirm_s: float = 0.7  # ... this long is an interruption whatever was said
    false_interruption_timeout_s: float = 1.0  # no words this long after the overlap: the agent resumes
    max_backchannel_s: float = 1.2  # a backchannel is shorter than this
    backchannels: frozenset[str] = frozenset(
        {"uh-huh", "uh huh", "mm-hmm", "mm hmm", "mhm", "mm", "hmm", "yeah", "yes", "yep", "right", "okay",
         "ok", "sure", "i see", "got it", "uh", "um", "ah", "oh", "wow", "cool", "nice", "alright", "true"}
    )  # fmt: skip


# Named turn-taking profiles: what each changes from the configured policy. "conversation" is the
# policy as configured; "tutoring" lets a learner think aloud (long pauses are not the end of a turn,
# and the tutor is not stopped by a short remark); "phone" expects line noise and echo (harder to
# interrupt, more patient with pauses) and is the telephony default.
PROFILES: dict[str, dict[str, float]] = {
    "conversation": {},
    "tutoring": {
        "endpoint_silence_s": 1.6,
        "endpoint_complete_s": 1.2,
        "endpoint_incomplete_s": 2.5,
        "barge_in_min_speech_s": 0.15,
        "barge_in_confirm_s": 1.0,
        "false_interruption_timeout_s": 1.2,
    },
    "phone": {
        "threshold": 0.6,
        "endpoint_silence_s": 0.8,
        "endpoint_complete_s": 0.6,
        "endpoint_incomplete_s": 1.2,
        "barge_in_min_speech_s": 0.2,
        "barge_in_confirm_s": 0.9,
        "false_interruption_timeout_s": 1.2,
    },
}


def with_profile(policy: TurnPolicy, profile: str) -> TurnPolicy:
    """``policy`` with the named profile's changes applied."""
    changes: dict[str, Any] = PROFILES[profile]
    return dataclasses.replace(policy, **changes)


# -- inputs -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class VadFrame:
    """One VAD window ending at input sample ``end_sample`` (16 kHz)."""

    end_sample: int
    probability: float
    gate: bool = True  # the cheap gate's vote (webrtcvad); onset needs it, continuation does not
    samples: int = VAD_WINDOW


@dataclass(frozen=True, slots=True)
class Commit:
    """The client says the user's turn is over now (push-to-talk release)."""


@dataclass(frozen=True, slots=True)
class TranscriptReady:
    """The ASR pass started at ``SilenceOnset`` for [start, end) is done."""

    turn_id: int
    start_sample: int
    end_sample: int
    complete: bool


@dataclass(frozen=True, slots=True)
class OverlapHeard:
    """The transcript of speech over the agent, [start, end)."""

    start_sample: int
    end_sample: int
    text: str
    agent_text: str = ""  # what the agent was saying around then (its own words, heard back = echo)


@dataclass(frozen=True, slots=True)
class TextTurn:
    """A turn that arrives as text (typed by the user, or a scripted line for the agent to say)."""


@dataclass(frozen=True, slots=True)
class ReplyStarted:
    turn_id: int


@dataclass(frozen=True, slots=True)
class ReplyEnded:
    turn_id: int


TurnInput = VadFrame | Commit | TranscriptReady | OverlapHeard | TextTurn | ReplyStarted | ReplyEnded


# -- actions ----------------------------------------------------------------------------------------
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
    reason: str  # "silence" | "commit" | "max_length"


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
    | StartText
    | Interrupt
    | PauseReply
    | ResumeReply
    | ClassifyOverlap
)


class TurnTaking:
    """The state machine. ``turn_id`` is the newest user turn (0 before the first)."""

    def __init__(self, policy: TurnPolicy | None = None) -> None:
        self.policy = policy or TurnPolicy()
        self.state = UserState.LISTENING
        self.turn_id = 0
        self.reply_turn: int | None = None  # the turn whose reply is in progress
        self._onset_start = 0
        self._onset_samples = 0
        self._speech_start = 0
        self._speech_end = 0
        self._silence_samples = 0
        self._endpoint_s = self.policy.endpoint_silence_s  # of the current pause

    @property
    def speech_start_sample(self) -> int:
        return self._speech_start

    @property
    def speech_end_sample(self) -> int:
        return self._speech_end

    def feed(self, item: TurnInput) -> list[Action]:
        match item:
            case VadFrame():
                return self._on_vad(item)
            case Commit():
                if self.state in (UserState.SPEAKING, UserState.PAUSED):
                    return [self._end("commit", UserState.LISTENING)]
                return []
            case TranscriptReady():
                return self._on_transcript(item)
            case OverlapHeard():
                return self._on_overlap_heard(item)
            case TextTurn():
                self.turn_id += 1
                return [*self._interrupt_reply(), StartText(self.turn_id)]
            case ReplyStarted(turn_id=tid):
                if tid == self.turn_id:
                    self.reply_turn = tid
                return []
            case ReplyEnded(turn_id=tid):
                if self.reply_turn == tid:
                    self.reply_turn = None
                return []

    # -- internals ----------------------------------------------------------------------------------
    def _is_speech(self, frame: VadFrame) -> bool:
        if self.state in (UserState.SPEAKING, UserState.DRAINING):
            return frame.probability >= self.policy.release_threshold
        return frame.probability >= self.policy.threshold and frame.gate

    def _on_vad(self, frame: VadFrame) -> list[Action]:
        speech = self._is_speech(frame)
        start_of_frame = frame.end_sample - frame.samples
        p = self.policy
        match self.state, speech:
            case UserState.LISTENING, True:
                self.state = UserState.ONSET
                self._onset_start = start_of_frame
                self._onset_samples = frame.samples
                return self._maybe_start(frame)
            case UserState.ONSET, True:
                self._onset_samples += frame.samples
                return self._maybe_start(frame)
            case UserState.ONSET, False:
                self.state = UserState.LISTENING
                return []
            case UserState.SPEAKING, True:
                self._speech_end = frame.end_sample
                if frame.end_sample - self._speech_start >= p.max_utterance_s * VAD_RATE:
                    return [self._end("max_length", UserState.DRAINING)]
                return []
            case UserState.SPEAKING, False:
                self.state = UserState.PAUSED
                self._silence_samples = frame.samples
                self._endpoint_s = p.endpoint_silence_s
                return [SilenceOnset(self.turn_id, self._speech_start, self._speech_end)]
            case UserState.PAUSED, True:
                self.state = UserState.SPEAKING
                self._speech_end = frame.end_sample
                return [SpeechResumed(self.turn_id)]
            case UserState.PAUSED, False:
                self._silence_samples += frame.samples
                if self._silence_samples >= self._endpoint_s * VAD_RATE:
                    return [self._end("silence", UserState.LISTENING)]
                return []
            case UserState.DRAINING, False:
                self.state = UserState.LISTENING
                return []
            case UserState.OVERLAP, True:
                self._speech_end = frame.end_sample
                if frame.end_sample - self._onset_start >= p.barge_in_confirm_s * VAD_RATE:
                    return self._confirm_interruption(frame.end_sample)
                return []
            case UserState.OVERLAP, False:
                self.state = UserState.OVERLAP_ENDED
                self._silence_samples = frame.samples
                return [ClassifyOverlap(self._onset_start, self._speech_end)]
            case UserState.OVERLAP_ENDED, True:
                self.state = UserState.OVERLAP
                self._speech_end = frame.end_sample
                return []
            case UserState.OVERLAP_ENDED, False:
                self._silence_samples += frame.samples
                if self._silence_samples >= p.false_interruption_timeout_s * VAD_RATE:
                    return self._resume_reply()
                return []
            case _:
                return []

    # -- barge-in ---------------------------------------------------------------------------------
    def _on_overlap_heard(self, heard: OverlapHeard) -> list[Action]:
        if self.state is not UserState.OVERLAP_ENDED or (heard.start_sample, heard.end_sample) != (
            self._onset_start,
            self._speech_end,
        ):
            return []  # stale: the user went on speaking, or it was already decided
        duration_s = (heard.end_sample - heard.start_sample) / VAD_RATE
        if classify_overlap(heard.text, duration_s, self.policy, heard.agent_text) != "interruption":
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

    def _on_transcript(self, ready: TranscriptReady) -> list[Action]:
        current = (self.turn_id, self._speech_start, self._speech_end)
        if (
            self.state is not UserState.PAUSED
            or (ready.turn_id, ready.start_sample, ready.end_sample) != current
        ):
            return []  # stale: the user went on, or the turn already ended
        p = self.policy
        self._endpoint_s = p.endpoint_complete_s if ready.complete else p.endpoint_incomplete_s
        actions: list[Action] = [Speculate(*current)]
        if self._silence_samples >= self._endpoint_s * VAD_RATE:
            actions.append(self._end("silence", UserState.LISTENING))
        return actions

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

    def _end(self, reason: str, next_state: UserState) -> EndOfTurn:
        self.state = next_state
        return EndOfTurn(self.turn_id, self._speech_start, self._speech_end, reason)


# Words after which a sentence is very likely to go on, even when the ASR put a period there.
_DANGLING = frozenset(
    "and or but so because if than that which who whose whom when where while with without to of for "
    "from in on at by about into as the a an my your his her its our their this these those "
    "um uh er like".split()
)


def transcript_complete(text: str) -> bool:
    """Whether ``text`` reads as a finished utterance: it ends with . ! or ? (not an ellipsis), and
    its last word is not one that a sentence rarely ends on ("and", "the", "to", "um" ...)."""
    t = text.strip().rstrip("\"'”’)]")
    if not t or t.endswith(("...", "…")) or t[-1] not in ".!?":
        return False
    words = t.rstrip(".!?").split()
    return bool(words) and words[-1].lower().strip(",;:") not in _DANGLING


def classify_overlap(text: str, duration_s: float, policy: TurnPolicy, agent_text: str = "") -> str:
    """What speech over the agent was: "noise" (no words), "echo" (mostly the agent's own recent
    words: its voice came back into the input), "backchannel" (only words from the backchannel list,
    and short), or "interruption" (anything else)."""
    words = re.findall(r"[a-z']+(?:-[a-z']+)*", text.lower())
    if not words:
        return "noise"
    own = set(re.findall(r"[a-z']+(?:-[a-z']+)*", agent_text.lower()))
    if own and len(words) >= 2 and sum(w in own for w in words) >= 0.7 * len(words):
        return "echo"
    phrase = " ".join(words)
    listed = policy.backchannels
    if duration_s <= policy.max_backchannel_s and (phrase in listed or all(w in listed for w in words)):
        return "backchannel"
    return "interruption"
