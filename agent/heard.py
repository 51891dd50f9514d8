"""What the user heard of a reply: the home of barge-in's bookkeeping. Pure: no loop, no clock.

A reply's audio is a run of spoken clauses, each with its place in the reply's audio (and word timings
where the TTS gives durations). Where the listener stopped comes from the client's playback reports
when it sends them, else from what was sent and when (streaming/playout.py). ``Heard`` turns a play
position into text, and keeps the reply's assistant message in memory equal to it: all of the reply
when it ends, what was heard when it is cut, and, when the client says later where it really stopped,
amended to that (or inserted after the user message it answered, or removed when nothing was heard).
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.memory import Memory, Message
from agent.tts.base import WordTiming


@dataclass(frozen=True, slots=True)
class SpokenClause:
    """A clause as it was spoken: its text and where it lies in the reply's audio (seconds)."""

    text: str
    start_s: float
    end_s: float
    words: tuple[WordTiming, ...] | None = None  # from the TTS, relative to start_s; None: estimate


def heard_text(clauses: list[SpokenClause], played_s: float) -> str:
    """The text the listener heard after ``played_s`` seconds of the reply.

    Whole clauses up to the play position; of the clause being played, the words that have fully
    played: from the TTS's word timings when it gave them, else assuming the words evenly spread over
    the clause's duration (an estimate).
    """
    heard: list[str] = []
    for c in clauses:
        if played_s >= c.end_s:
            heard.append(c.text)
            continue
        if played_s > c.start_s:
            if c.words is not None:
                done = [w.word for w in c.words if c.start_s + w.end_s <= played_s]
            else:
                words = c.text.split()
                fraction = (played_s - c.start_s) / max(c.end_s - c.start_s, 1e-9)
                done = words[: int(len(words) * fraction)]
            if done:
                heard.append(" ".join(done))
        break
    return " ".join(heard)


class Heard:
    """What one reply said and what the user heard of it, and its message in ``memory``."""

    def __init__(self, memory: Memory) -> None:
        self._memory = memory
        self.clauses: list[SpokenClause] = []
        self.user_message: Message | None = None  # the user message this reply answers
        self.message: Message | None = None  # the reply's assistant message in memory, if any
        self.sent_s = 0.0  # audio handed to the transport when the reply ended or was cut
        self.cut = False

    @property
    def said_text(self) -> str:
        """Everything synthesized so far (what the user hears or is about to)."""
        return " ".join(c.text for c in self.clauses)

    @property
    def duration_s(self) -> float:
        return self.clauses[-1].end_s if self.clauses else 0.0

    def spoke(self, text: str, duration_s: float, words: tuple[WordTiming, ...] | None = None) -> None:
        """A clause's audio was made: it follows the clauses before it."""
        start = self.duration_s
        self.clauses.append(SpokenClause(text, start, start + duration_s, words))

    def finished(self, sent_s: float) -> str:
        """The reply played to its end: memory keeps all of it. Returns the text."""
        self.sent_s = sent_s
        self.message = self._memory.add_assistant(self.said_text)
        return self.said_text

    def interrupted(self, played_s: float, sent_s: float) -> str:
        """The user cut the reply after ``played_s`` seconds of it: memory keeps what was heard."""
        self.cut, self.sent_s = True, sent_s
        text = heard_text(self.clauses, min(played_s, sent_s))
        self.message = self._memory.add_assistant(text, interrupted=True)
        return text

    def amend(self, played_s: float) -> str:
        """The client said, after the cut, that it played ``played_s`` seconds: memory holds exactly
        the words up to there (never past what was sent). Returns that text."""
        text = heard_text(self.clauses, min(played_s, self.sent_s))
        self.message = self._memory.amend(self.message, text, after=self.user_message)
        return text
