"""What the user heard of a reply: word timings when the TTS gives them, estimates otherwise, and the
reply's message in memory kept equal to it."""

from __future__ import annotations

from agent.heard import Heard, SpokenClause, heard_text
from agent.memory import Memory
from agent.tts.base import WordTiming, shift_words


def test_word_timings_decide_where_the_cut_falls() -> None:
    # "Hello" is long and "there" short: an even spread would say one word by 0.5 s; the timings say
    # "Hello" had not finished playing yet.
    words = (WordTiming("Hello", 0.0, 0.6), WordTiming("there.", 0.6, 0.8))
    clauses = [SpokenClause("Hello there.", 0.0, 0.8, words), SpokenClause("How are you?", 0.8, 2.0)]
    assert heard_text(clauses, 0.5) == ""
    assert heard_text(clauses, 0.7) == "Hello"
    assert heard_text(clauses, 0.8) == "Hello there."
    assert heard_text(clauses, 1.4) == "Hello there. How"  # no timings: the estimate


def test_shifted_timings_follow_the_trimmed_audio() -> None:
    words = [WordTiming("a", 0.1, 0.3), WordTiming("b", 0.3, 0.6)]

    def rounded(timings: tuple[WordTiming, ...]) -> list[tuple[str, float, float]]:
        return [(w.word, round(w.start_s, 6), round(w.end_s, 6)) for w in timings]

    assert rounded(shift_words(words, -0.2, 0.35)) == [("a", 0.0, 0.1), ("b", 0.1, 0.35)]
    assert rounded(shift_words(words, -0.3, 1.0)) == [("b", 0.0, 0.3)]  # "a" was cut away


def test_memory_holds_what_was_heard_then_what_the_client_says() -> None:
    memory = Memory("sys", 1000)
    heard = Heard(memory)
    heard.user_message = memory.add_user("tell me a story")
    heard.spoke("Once upon a time,", 1.0)
    heard.spoke("there was a knight.", 1.0)
    assert heard.interrupted(played_s=1.5, sent_s=1.8) == "Once upon a time, there was"
    assert [(m.text, m.interrupted) for m in memory.messages][1] == ("Once upon a time, there was", True)
    assert heard.amend(0.0) == ""  # the client had played nothing
    assert [m.role for m in memory.messages] == ["user"]
    assert heard.amend(5.0) == "Once upon a time, there was a"  # never past what was sent (1.8 s)
    assert [m.text for m in memory.messages] == ["tell me a story", "Once upon a time, there was a"]


def test_a_reply_played_to_its_end_is_remembered_whole() -> None:
    memory = Memory("sys", 1000)
    heard = Heard(memory)
    heard.spoke("Hi.", 0.3)
    heard.spoke("Bye.", 0.3)
    assert heard.finished(sent_s=0.6) == "Hi. Bye." and not heard.cut
    assert memory.messages[-1].text == "Hi. Bye." and not memory.messages[-1].interrupted
