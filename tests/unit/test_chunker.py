from __future__ import annotations

import pytest

from agent.chunker import ClauseChunker, speakable
from agent.heard import SpokenClause, heard_text


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
