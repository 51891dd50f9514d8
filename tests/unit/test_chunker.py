from __future__ import annotations

import pytest

from agent.chunker import ChunkPolicy, ClauseChunker, ReplyGuard, ReplyLimits, speakable
from agent.heard import SpokenClause, heard_text
from agent.reply import writes_fast_enough


def stream(text: str, chunker: ClauseChunker | None = None) -> list[str]:
    """Feed ``text`` word by word, as an LLM does, and collect the clauses."""
    c = chunker or ClauseChunker()
    out: list[str] = []
    words = text.split(" ")
    for i, w in enumerate(words):
        out += c.push(w if i == 0 else " " + w)
    return out + c.flush()


@pytest.mark.parametrize(
    ("text", "clauses"),
    [
        ("Sure, I can help. Paris is the capital.", ["Sure, I can help.", "Paris is the capital."]),
        # a one-word "Well," is too short to say alone; the next comma ends the first clause
        ("Well, that is a good question, my friend.", ["Well, that is a good question,", "my friend."]),
        ("Yes - and no.", ["Yes - and no."]),
        ("Dr. Smith paid 3.50 dollars. Right?", ["Dr. Smith paid 3.50 dollars.", "Right?"]),
        ("It is e.g. fine.", ["It is e.g. fine."]),
        ("Hello!", ["Hello!"]),
        (
            "The moon is the largest planet in our solar system and is far away from Earth.",
            ["The moon is the largest planet", "in our solar system and is far away from Earth."],
        ),
    ],
)
def test_clauses(text: str, clauses: list[str]) -> None:
    assert stream(text) == clauses


@pytest.mark.parametrize(
    ("text", "clauses"),
    [
        # a subject of four words or more, then its verb: the first clause ends before the verb
        ("The capital of France is Paris.", ["The capital of France", "is Paris."]),
        (
            "The tallest mountain in the world is Mount Everest.",
            ["The tallest mountain in the world", "is Mount Everest."],
        ),
        ("There are seven days in a week.", ["There are seven days", "in a week."]),
        # too short a phrase before the verb; "and" joins two words into one phrase
        ("A spider has eight legs.", ["A spider has eight legs."]),
        ("Mix blue paint and yellow paint.", ["Mix blue paint and yellow paint."]),
        # punctuation came first: the usual comma and sentence rules decide
        ("Yes, the sun is a star in the sky.", ["Yes, the sun is a star in the sky."]),
        # only the first clause: later ones keep their length for prosody
        ("Hi there. The capital of France is Paris.", ["Hi there.", "The capital of France is Paris."]),
    ],
)
def test_a_first_clause_ends_at_a_phrase_break(text: str, clauses: list[str]) -> None:
    assert stream(text) == clauses


def test_a_phrase_break_waits_for_the_whole_word_and_can_be_switched_off() -> None:
    c = ClauseChunker()
    assert c.push("The capital of France is") == []  # "is" may be the start of "island"
    assert c.push("land") == []
    assert c.push(" nice") == []  # "island" starts no phrase
    assert ClauseChunker(ChunkPolicy(first_phrase_words=0)).push("The capital of France is Paris ") == []
    assert stream("The capital of France is Paris.", ClauseChunker(ChunkPolicy(first_phrase_words=0))) == [
        "The capital of France is Paris."
    ]


def test_a_slow_model_gets_no_phrase_break_until_it_is_fast_again() -> None:
    c = ClauseChunker()
    assert c.push("The capital of France is ", phrase_break=False) == []  # the rest would be late
    assert c.push("big. ", phrase_break=False) == ["The capital of France is big."]
    c = ClauseChunker()
    assert c.push("The capital of France is ", phrase_break=False) == []
    assert c.push("big", phrase_break=True) == ["The capital of France"]  # writing fast again


@pytest.mark.parametrize(
    ("deltas", "elapsed_s", "fast"),
    [(1, 0.0, True), (6, 0.25, True), (6, 0.5, True), (6, 0.6, False), (9, 1.6, False)],
)
def test_a_phrase_break_needs_ten_tokens_a_second(deltas: int, elapsed_s: float, fast: bool) -> None:
    assert writes_fast_enough(deltas, elapsed_s) is fast


def test_first_clause_is_released_before_the_reply_ends() -> None:
    c = ClauseChunker()
    assert c.push("Paris is the capital") == []
    assert c.push(". It") == ["Paris is the capital."]
    assert c.flush() == ["It"]


def test_markdown_and_emoji_are_not_spoken() -> None:
    assert speakable("**Bold** and `code` 😀 [a link](http://x)") == "Bold and code a link"
    assert stream("## Title\n- first item, with words.") == ["Title first item,", "with words."]


def test_punctuation_only_is_never_a_clause() -> None:
    assert stream("...") == []
    assert ClauseChunker().flush() == []


def test_heard_text_cuts_at_the_play_position() -> None:
    clauses = [SpokenClause("Hello there.", 0.0, 1.0), SpokenClause("How are you today?", 1.0, 3.0)]
    assert heard_text(clauses, 0.0) == ""
    assert heard_text(clauses, 1.0) == "Hello there."
    assert heard_text(clauses, 2.0) == "Hello there. How are"
    assert heard_text(clauses, 5.0) == "Hello there. How are you today?"


# -- the reply guard -------------------------------------------------------------------------------
def test_a_word_loop_is_cut_before_its_repetition() -> None:
    guard = ReplyGuard()
    assert guard.admit(
        "You should pack a pair of sunscreen, sunglasses, sunscreen, sunscreen, sunscreen,"
    ) == ("You should pack a pair of sunscreen, sunglasses, sunscreen.")
    assert guard.stopped == "loop" and guard.admit("and a hat.") is None


def test_a_phrase_loop_and_a_repeated_clause_end_the_reply() -> None:
    guard = ReplyGuard()
    assert guard.admit("Go to the beach, go to the beach, go to the beach,") == "Go to the beach."
    again = ReplyGuard()
    assert again.admit("Drink some water,") == "Drink some water,"
    assert again.admit("drink some water,") is None and again.stopped == "loop"


def test_a_reply_is_capped_at_its_sentences_and_words() -> None:
    guard = ReplyGuard(ReplyLimits(max_sentences=2, max_words=60))
    assert guard.admit("One.") == "One."
    assert guard.admit("Two, and") == "Two, and"
    assert guard.admit("a half.") == "a half."
    assert guard.stopped == "length" and guard.admit("Three.") is None
    wordy = ReplyGuard(ReplyLimits(max_sentences=9, max_words=8))
    assert wordy.admit("one two three four five,") is not None
    assert wordy.admit("six seven eight nine ten.") is None and wordy.stopped == "length"


def test_ordinary_replies_pass_untouched() -> None:
    guard = ReplyGuard()
    clauses = ["The capital of Italy is Rome.", "It is known for the Colosseum,", "and very good pasta."]
    assert [guard.admit(c) for c in clauses] == clauses and guard.stopped is None
