from __future__ import annotations

from agent.llm.base import ChatMessage
from agent.memory import MESSAGE_OVERHEAD_TOKENS, Memory


def words(text: str) -> int:
    return len(text.split())


def test_system_prompt_then_turns_in_order() -> None:
    m = Memory("be brief", 1000, words)
    m.add_user("hello")
    m.add_assistant("hi there")
    assert m.render() == (
        ChatMessage("system", "be brief"),
        ChatMessage("user", "hello"),
        ChatMessage("assistant", "hi there"),
    )


def test_oldest_turns_are_dropped_to_fit_the_budget() -> None:
    per = 4 + MESSAGE_OVERHEAD_TOKENS  # each message below is 4 words
    m = Memory("sys", (1 + MESSAGE_OVERHEAD_TOKENS) + 4 * per, words)
    for i in range(5):
        m.add_user(f"question number {i} please")
        m.add_assistant(f"answer number {i} here")
    rendered = m.render()
    assert rendered[0] == ChatMessage("system", "sys")
    assert [r.content for r in rendered[1:]] == [
        "question number 3 please",
        "answer number 3 here",
        "question number 4 please",
        "answer number 4 here",
    ]
    assert m.dropped_messages == 6
    assert len(m.messages) == 4  # storage stays bounded too


def test_history_never_starts_with_an_assistant_message() -> None:
    per = 4 + MESSAGE_OVERHEAD_TOKENS
    m = Memory("sys", (1 + MESSAGE_OVERHEAD_TOKENS) + 3 * per, words)
    m.add_user("one two three four")
    m.add_assistant("five six seven eight")
    m.add_user("nine ten eleven twelve")
    m.add_assistant("a b c d")
    assert [r.role for r in m.render()] == ["system", "user", "assistant"]


def test_unanswered_user_turns_merge_with_the_next() -> None:
    m = Memory("sys", 1000, words)
    m.add_user("what is")
    m.add_user("the time")
    assert m.render()[1:] == (ChatMessage("user", "what is the time"),)


def test_nothing_heard_adds_nothing_and_interruptions_are_marked() -> None:
    m = Memory("sys", 1000, words)
    m.add_user("tell me a story")
    m.add_assistant("   ", interrupted=True)
    m.add_assistant("Once upon", interrupted=True)
    assert [(x.role, x.text, x.interrupted) for x in m.messages] == [
        ("user", "tell me a story", False),
        ("assistant", "Once upon", True),
    ]


def test_what_the_client_heard_replaces_the_estimate_in_place() -> None:
    m = Memory("sys", 1000, words)
    question = m.add_user("tell me a story")
    cut = m.add_assistant("Once upon a time", interrupted=True)
    m.add_user("stop")
    cut = m.amend(cut, "Once upon", after=question)
    assert [(x.role, x.text, x.interrupted) for x in m.messages] == [
        ("user", "tell me a story", False),
        ("assistant", "Once upon", True),
        ("user", "stop", False),
    ]
    cut = m.amend(cut, "", after=question)  # nothing was heard after all
    assert cut is None and [x.role for x in m.messages] == ["user", "user"]
    cut = m.amend(cut, "Once", after=question)  # with no message, it goes after the question
    assert [(x.role, x.text) for x in m.messages] == [
        ("user", "tell me a story"),
        ("assistant", "Once"),
        ("user", "stop"),
    ]


def test_amending_a_message_no_longer_stored_changes_nothing() -> None:
    m = Memory("sys", 12, words)  # room for little
    question = m.add_user("one two three")
    cut = m.add_assistant("four five", interrupted=True)
    m.add_user("six seven eight nine ten eleven")  # trims the first turn away
    before = m.messages
    assert m.amend(cut, "four", after=question) is None
    assert m.messages == before
