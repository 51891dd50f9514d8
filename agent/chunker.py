"""Text deltas in, speakable clauses out: the first clause goes to TTS as soon as it is complete.

Pure: no model, no clock. ``push(delta)`` returns the clauses that became complete; ``flush()`` the rest.
A boundary is sentence punctuation followed by white space (not after an abbreviation or inside a
number), or clause punctuation (, ; : and dashes) once the clause has enough words to be said
naturally on its own: fewer for the first clause (speed), more afterwards (prosody). A clause that runs
past ``max_words`` without punctuation is cut at a word boundary. The first clause may also end at a
natural phrase break before any punctuation: before a verb or a joining word that follows a phrase of
``first_phrase_words`` words ("The tallest mountain in the world | is Mount Everest.", "There are seven
days | in a week."), where a speaker would pause too; its audio starts that much sooner.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ABBREVIATIONS = frozenset("mr mrs ms dr st sr jr vs etc e.g i.e prof inc ltd co no approx dept fig".split())
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)")
_CLAUSE_END = re.compile(r"[,;:]+(?=\s)|[ \t][—–-]{1,2}(?=\s)")  # a dash between words, not a bullet
_MARKDOWN = re.compile(r"(\*\*|__|`+|^#+\s*|^\s*[-*+]\s+|^\s*\d+\.\s+(?=\S))", re.MULTILINE)
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\ufe0f]")
_SPACES = re.compile(r"\s+")
# Words that start a new phrase: a forced cut before one of them sounds least broken.
_JOINERS = frozenset(
    "and but or so because which that who when where while with without for to in on at from than "
    "as if then after before since until about".split()
)
# Where a first clause may end early: before a verb after its subject, or before a joining word other
# than the ones that join two words into one phrase ("blue and yellow").
_PHRASE_STARTS = (_JOINERS - {"and", "or"}) | frozenset(
    "is are was were has have had can could will would should must equals".split()
)


@dataclass(frozen=True, slots=True)
class ChunkPolicy:
    first_clause_words: int = 3  # a comma ends the first clause once it has this many words
    clause_words: int = 6  # ... and later clauses once they have this many
    first_max_words: int = 9  # an unpunctuated first clause is cut this long (before a joining word)
    max_words: int = 28  # any unpunctuated clause is cut this long
    # The first clause ends before a verb or joining word that follows this many words (0: never).
    first_phrase_words: int = 4


def speakable(text: str) -> str:
    """Text with markdown markup, links and emoji removed and white space folded."""
    text = _LINK.sub(r"\1", text)
    text = _MARKDOWN.sub("", text)
    text = _EMOJI.sub("", text)
    return _SPACES.sub(" ", text).strip()


def _word_count(text: str) -> int:
    return len(text.split())


def _ends_with_abbreviation(text: str) -> bool:
    last = text.rsplit(None, 1)[-1] if text.strip() else ""
    word = last.rstrip(".").lower().lstrip("(\"'“‘")
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def _forced_cut(buf: str, limit: int) -> int:
    """Where to cut an unpunctuated run of more than ``limit`` words: before the last joining word
    after the third word, else after ``limit`` words (the last, maybe unfinished, word stays)."""
    spans = [m.span() for m in re.finditer(r"\S+", buf)][: limit + 1]
    for i in range(limit, 2, -1):
        if buf[spans[i][0] : spans[i][1]].lower().strip(",.") in _JOINERS:
            return spans[i][0]
    return spans[limit - 1][1]


def _phrase_break(buf: str, min_words: int) -> int | None:
    """Where an unpunctuated opening phrase of at least ``min_words`` words ends: before a complete
    word (white space after it) that starts a new phrase, with no punctuation before it."""
    for i, m in enumerate(re.finditer(r"\S+", buf)):
        if any(c in m.group() for c in ",;:.!?…—–"):
            return None
        if i >= min_words and m.end() < len(buf) and m.group().lower() in _PHRASE_STARTS:
            return m.start()
    return None


class ClauseChunker:
    def __init__(self, policy: ChunkPolicy | None = None) -> None:
        self.policy = policy or ChunkPolicy()
        self._buf = ""
        self._emitted = 0

    def push(self, delta: str, phrase_break: bool = True) -> list[str]:
        """Add LLM text; return the clauses now complete (possibly none). ``phrase_break=False``:
        the first clause does not end at a phrase break now (the caller knows the rest would be late)."""
        self._buf += delta
        out: list[str] = []
        while (clause := self._next_clause(phrase_break)) is not None:
            out.append(clause)
        return out

    def flush(self) -> list[str]:
        """The remaining text as a last clause (end of the reply)."""
        rest = speakable(self._buf)
        self._buf = ""
        if not rest or not any(c.isalnum() for c in rest):
            return []
        self._emitted += 1
        return [rest]

    def _min_clause_words(self) -> int:
        return self.policy.first_clause_words if self._emitted == 0 else self.policy.clause_words

    def _next_clause(self, phrase_break: bool) -> str | None:
        buf = self._buf
        cut = None
        for m in _SENTENCE_END.finditer(buf):
            head = buf[: m.end()]
            if m.group().startswith(".") and len(m.group()) == 1 and _ends_with_abbreviation(head):
                continue
            cut = m.end()
            break
        for m in _CLAUSE_END.finditer(buf):
            if cut is not None and m.end() >= cut:
                break
            if _word_count(buf[: m.end()]) >= self._min_clause_words():
                cut = m.end()
                break
        if cut is None and self._emitted == 0 and phrase_break and self.policy.first_phrase_words > 0:
            cut = _phrase_break(buf, self.policy.first_phrase_words)
        limit = self.policy.first_max_words if self._emitted == 0 else self.policy.max_words
        if cut is None and _word_count(buf) > limit:
            cut = _forced_cut(buf, limit)
        if cut is None:
            return None
        clause, self._buf = speakable(buf[:cut]), buf[cut:]
        if not any(c.isalnum() for c in clause):
            return self._next_clause(phrase_break) if self._buf.strip() else None
        self._emitted += 1
        return clause


@dataclass(frozen=True, slots=True)
class ReplyLimits:
    """How much of an LLM reply is spoken: a voice answer is short, and the rest is for the asking."""

    max_sentences: int = 3
    max_words: int = 60  # about 20 s of speech
    loop_ngram: int = 4  # longest unit (in words) whose back-to-back repetition is a loop
    loop_repeats: int = 3  # a unit said this many times in a row is a loop


_WORD = re.compile(r"[\w'’-]+")


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def _loop_start(words: list[str], limits: ReplyLimits) -> int | None:
    """Index of the first word of the second copy of the earliest unit of 1..loop_ngram words that
    stands ``loop_repeats`` times back to back, or None."""
    best: int | None = None
    for n in range(1, limits.loop_ngram + 1):
        for j in range(len(words) - n * limits.loop_repeats + 1):
            unit = words[j : j + n]
            if all(words[j + k * n : j + (k + 1) * n] == unit for k in range(1, limits.loop_repeats)):
                if best is None or j + n < best:
                    best = j + n
                break
    return best


class ReplyGuard:
    """Clause by clause, whether an LLM reply goes on being spoken. It stops a degenerate loop (the
    small model repeating a word, a phrase or a clause: "sunscreen, sunscreen, sunscreen") at the
    last clean point before it, and a reply past ``max_sentences`` or ``max_words``. Pure."""

    def __init__(self, limits: ReplyLimits | None = None) -> None:
        self.limits = limits or ReplyLimits()
        self._said: list[str] = []  # admitted clauses, normalized
        self._words = 0
        self._sentences = 0
        self.stopped: str | None = None  # "loop" | "length" once the guard ended the reply

    def admit(self, clause: str) -> str | None:
        """The clause to speak (cut short before a loop that starts inside it), or None: the reply
        ends before it. Once it returned None (or a cut clause) it admits nothing more."""
        if self.stopped is not None:
            return None
        words = _words(clause)
        key = " ".join(words)
        if key and key in self._said:
            return self._stop("loop", None)
        start = _loop_start(words, self.limits)
        if start is not None:
            return self._stop("loop", _cut_before(clause, start))
        if self._words + len(words) > self.limits.max_words and self._said:
            return self._stop("length", None)
        self._said.append(key)
        self._words += len(words)
        if clause.rstrip("\"'”’)] ").endswith((".", "!", "?", "…")):
            self._sentences += 1
            if self._sentences >= self.limits.max_sentences:
                self.stopped = "length"  # this one is said; nothing after it
        return clause

    def _stop(self, why: str, clause: str | None) -> str | None:
        self.stopped = why
        return clause


def _cut_before(clause: str, word_index: int) -> str | None:
    """``clause`` up to its ``word_index``-th word, ended as a sentence (None if nothing is left)."""
    spans = [m.span() for m in _WORD.finditer(clause)]
    head = clause[: spans[word_index][0]].rstrip(" ,;:—–-")
    if not any(c.isalnum() for c in head):
        return None
    return head if head.endswith((".", "!", "?")) else head + "."
