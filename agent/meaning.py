"""What a transcript means for turn-taking, pure: does it read as finished? Was speech over the agent
an interruption, a backchannel, its own echo, or noise? (Text rules: the second opinion beside the
learned end-of-turn model, agent/eot/.)"""

from __future__ import annotations

import re
from typing import Literal

from agent.config import TurnPolicy

Overlap = Literal["noise", "echo", "backchannel", "interruption"]
# How a finished ASR pass reads: finished, finished but brief (may go on), or left hanging.
TranscriptReading = Literal["complete", "brief", "dangling"]
# A word as the overlap rules see it: letters and apostrophes, hyphenated parts kept together.
_WORD = re.compile(r"[a-z']+(?:-[a-z']+)*")
# Closing quotes and brackets after a sentence's last mark.
_CLOSERS = "\"'”’)]"

# Words after which a sentence is very likely to go on, even when the ASR put a period there.
_DANGLING = frozenset(
    "and or but so because if than that which who whose whom when where while with without to of for "
    "from in on at by about into as the a an my your his her its our their this these those "
    "um uh er like".split()
)


_NUMBER_WORDS = frozenset(
    "zero oh o one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety "
    "hundred thousand double triple".split()
)
_TOKEN = re.compile(r"[A-Za-z0-9]+")
# Digit strings a speaker says in one go and that are then whole: 7- and 10/11-digit phone numbers.
_WHOLE_DIGIT_COUNTS = frozenset({7, 10, 11})
# A clock time at the end: "at 7 30", "by 10:45", "7.30" (Whisper writes all three).
_CLOCK_TIME = re.compile(
    r"""(?: \b(?:at|by|until|till|around|before|after|from|to) \s+ (?:1[0-2]|0?[1-9]) [\s:.]
        | \b(?:1[0-2]|0?[1-9]) [:.] ) [0-5]\d \W*$""",
    re.IGNORECASE | re.VERBOSE,
)
# Words that say a figure is a code being given (read out in groups), not an amount.
_NAMES_A_NUMBER = frozenset("number code pin zip postcode account order reference extension id".split())


def transcript_reading(text: str) -> TranscriptReading:
    """How ``text`` reads at a pause: "dangling" when it is not finished (``transcript_complete``),
    "brief" when it is finished but a short statement a speaker often goes on from
    (``brief_statement``), else "complete"."""
    if not transcript_complete(text):
        return "dangling"
    return "brief" if brief_statement(text) else "complete"


def transcript_complete(text: str) -> bool:
    """Whether ``text`` reads as a finished utterance: it ends with . ! or ? (not an ellipsis), its
    last word is not one that a sentence rarely ends on ("and", "the", "to", "um" ...), and it does
    not end in the middle of something read out piece by piece (digits, letters: ``dictation``)."""
    t = text.strip().rstrip(_CLOSERS)
    if not t or t.endswith(("...", "…")) or t[-1] not in ".!?":
        return False
    words = t.rstrip(".!?").split()
    if not words or words[-1].lower().strip(",;:") in _DANGLING:
        return False
    return not dictation(t)


# How a question or a short answer begins: those end a turn when finished, however short.
_QUESTION_START = frozenset(
    "what who whom whose where when why how which is are am was were can could do does did will would "
    "should shall may might must have has had isn't aren't can't don't doesn't didn't won't".split()
)
_ANSWER_WORDS = frozenset(
    "yes yeah yep yup no nope nah okay ok sure right fine thanks thank hello hi hey bye goodbye "
    "please sorry great perfect exactly".split()
)
BRIEF_WORDS = (3, 5)  # a statement of this many words is brief


def brief_statement(text: str) -> bool:
    """Whether a finished ``text`` is a short statement or request that a speaker often goes on from
    after a pause ("I need a table.", "Call me a taxi.", "I have a question."): 3-5 words, not a
    question, not a yes/no/thanks/greeting. One or two words ("Paris.", "Yes, please.") are an
    answer and end the turn."""
    t = text.strip().rstrip(_CLOSERS)
    words = [w.lower() for w in re.findall(r"[A-Za-z0-9']+", t)]
    if not BRIEF_WORDS[0] <= len(words) <= BRIEF_WORDS[1] or t.endswith("?"):
        return False
    return words[0] not in _QUESTION_START and not (_ANSWER_WORDS & set(words))


def dictation(text: str) -> bool:
    """Whether ``text`` ends in a sequence read out one piece at a time that may go on: digits (as
    figures or words: "4 1 5", "four one five"), single letters ("J, O, H"), or both ("A B 3"), at
    least two pieces; not one amount ("1999", "twenty five", "BA 294") and not a whole phone number
    (7, 10 or 11 digits), and not a clock time ("at 7 30", "10:45")."""
    if _CLOCK_TIME.search(text):
        return False
    run: list[str] = []
    for token in reversed(_TOKEN.findall(text)):
        low = token.lower()
        if not (token.isdigit() or low in _NUMBER_WORDS or (len(token) == 1 and low not in ("a", "i"))):
            break
        run.insert(0, low)
    letters = sum(1 for t in run if not t.isdigit() and t not in _NUMBER_WORDS)
    digits = sum(len(t) if t.isdigit() else 1 for t in run if t.isdigit() or t in _NUMBER_WORDS)
    if letters and len(run) >= 2:
        return True
    if digits < 2 or digits in _WHOLE_DIGIT_COUNTS:
        return False
    if len(run) == 1:  # one figure ("415"): an amount, unless the sentence is giving a number
        return bool(_NAMES_A_NUMBER & set(_TOKEN.findall(text.lower())))
    return not _one_amount(run)


def _one_amount(words: list[str]) -> bool:
    """Number words that make one quantity ("twenty five", "two hundred"), not a digit string."""
    tens = {"twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"}
    return len(words) == 2 and (words[0] in tens or words[1] in ("hundred", "thousand"))


_SOUNDEX = {**dict.fromkeys("bfpv", "1"), **dict.fromkeys("cgjkqsxz", "2"), **dict.fromkeys("dt", "3"),
            "l": "4", "m": "5", "n": "5", "r": "6"}  # fmt: skip


def sounds_like(word: str) -> str:
    """A word's Soundex key: its first letter and the sounds of up to three consonants after it.
    Whisper spells the agent's own words back as their homophones ("flour" -> "Flower.")."""
    letters = [c for c in word.lower() if c.isalpha()]
    if not letters:
        return ""
    key, last = letters[0], _SOUNDEX.get(letters[0], "")
    for c in letters[1:]:
        code = _SOUNDEX.get(c, "")
        if code and code != last:
            key += code
        if c not in "hw":  # h and w do not separate two equal sounds; vowels do
            last = code
    return (key + "000")[:4]


def _mostly_own_words(words: list[str], agent_text: str) -> bool:
    """Whether at least 70 % of ``words`` are the agent's own (its voice came back): the same word,
    or one of four letters or more that sounds like one of its words. One word is enough when it is
    one of the agent's (of four letters or more: "the", "no", "it" are anyone's)."""
    own = set(_WORD.findall(agent_text.lower()))
    if not own or not words:
        return False
    sounds = {sounds_like(w) for w in own if len(w) >= 4}

    def theirs(w: str) -> bool:
        return w in own or (len(w) >= 4 and sounds_like(w) in sounds)

    if len(words) == 1:
        return len(words[0]) >= 4 and theirs(words[0])
    return sum(theirs(w) for w in words) >= 0.7 * len(words)


def classify_overlap(
    text: str,
    duration_s: float,
    policy: TurnPolicy,
    agent_text: str = "",
    avg_logprob: float | None = None,
    tilt_db: float | None = None,
    louder_than_echo_s: float | None = None,
) -> Overlap:
    """What speech over the agent was: "noise" (no words), "echo" (mostly the agent's own recent
    words: its voice came back into the input), "backchannel" (short, and either only words from the
    backchannel list or *wordless*: "mm-hmm", "uh-huh", a laugh, which Whisper hears as "Mama",
    "Aha", "homeless" with low confidence, ``avg_logprob`` under ``wordless_logprob``, and as at most
    ``wordless_max_words`` different words ("ha ha ha" is one): a sentence heard unsure, over an echo
    or cut into pieces, is still words; or a short hum with the mouth closed, ``tilt_db`` under
    ``hum_tilt_db``: "mm-hmm", "hmm", whatever the ASR made of it), or "interruption" (anything
    else, and any overlap with a word from ``interrupt_words`` that is not a hum, however unsure the
    ASR was of it). Where the agent's echo comes back (``louder_than_echo_s`` is known, see
    agent/aec.py), an overlap that was never ``echo_overlap_louder_s`` louder than that echo is
    "echo" whatever its words: Whisper turns what the canceller leaves of the agent's voice into
    words of its own ("No.", "What?", "the tide.")."""
    words = _WORD.findall(text.lower())
    if not words:
        return "noise"
    if louder_than_echo_s is not None and louder_than_echo_s < policy.echo_overlap_louder_s:
        return "echo"
    short = duration_s <= policy.max_backchannel_s
    if duration_s <= policy.max_hum_s and tilt_db is not None and tilt_db < policy.hum_tilt_db:
        return "backchannel"
    padded = f" {' '.join(words)} "
    if any(f" {w} " in padded for w in policy.interrupt_words):
        return "interruption"  # "Wait." heard unsure: missing a stop costs more than a misheard hum
    unsure = avg_logprob is not None and avg_logprob < policy.wordless_logprob
    if short and unsure and len(set(words)) <= policy.wordless_max_words:
        return "backchannel"
    if _mostly_own_words(words, agent_text):
        return "echo"
    phrase = " ".join(words)
    listed = policy.backchannels
    if short and (phrase in listed or all(w in listed for w in words)):
        return "backchannel"
    return "interruption"
