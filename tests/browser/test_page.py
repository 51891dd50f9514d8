"""The page in a real Chromium, for each audio transport: talk, see, hear, interrupt, measure.

The fake microphone plays synthesized speech; the page is driven only as a user would (the Connect
button) and read from the DOM and from ``window.voxloop`` (the page's own record of what it heard,
with AudioContext times).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from streaming.devtools.bench import LocalServer
from tests.browser.conftest import ARTIFACTS, mic_wav

TRANSPORTS = ["webrtc", "websocket"]


async def _page(launch: Any, server: LocalServer, wav: Path, transport: str, **flags: bool) -> Page:
    browser = await launch(wav, **flags)
    page = await browser.new_page(viewport={"width": 1280, "height": 860})
    page.on("console", lambda m: print(f"[page {m.type}] {m.text}"))
    await page.goto(f"{server.http}/?transport={transport}")
    await page.get_by_role("button", name="Connect").click()
    return page


async def _open(launch: Any, server: LocalServer, wav: Path, transport: str) -> Page:
    page = await _page(launch, server, wav, transport)
    await page.wait_for_function("window.voxloop.phase === 'live'", timeout=20_000)
    assert await page.evaluate("window.voxloop.transport") == transport
    return page


async def _state(page: Page) -> dict[str, Any]:
    return await page.evaluate("JSON.parse(JSON.stringify(window.voxloop))")  # type: ignore[no-any-return]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_question_is_transcribed_answered_heard_and_timed(
    launch: Any, server: LocalServer, tmp_path: Path, transport: str
) -> None:
    wav = mic_wav(tmp_path / "question.wav", [1.5, "What is the capital of France?", 20.0])
    page = await _open(launch, server, wav, transport)
    user = page.locator(".msg.user:not(.partial)").first
    await user.wait_for(timeout=30_000)
    assert "capital" in (await user.inner_text()).lower()
    await page.wait_for_function("Object.values(window.voxloop.turns).some(t => t.heard)", timeout=30_000)
    agent = page.locator(".msg.agent").first
    assert len((await agent.inner_text()).split()) >= 2
    # The page played the agent's voice: its output meter read audible levels.
    state = await _state(page)
    assert state["maxOutputPeak"] > 0.05, state["maxOutputPeak"]
    # The latency waterfall shows the turn, with the page's own voice-to-voice figure on top.
    figure = page.locator("figure.waterfall").first
    await figure.wait_for(timeout=10_000)
    caption = await figure.locator("figcaption").inner_text()
    assert "voice to voice" in caption and "ms" in caption, caption
    assert await figure.locator(".wf-bar.stage").count() >= 4
    turn = next(t for t in state["turns"].values() if t.get("heard"))
    assert 0 < turn["v2vMs"] < 5000, turn
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"page-{transport}.png"), full_page=True)
    record = {
        "transport": transport,
        "v2v_ms": round(turn["v2vMs"], 1),
        "metrics": turn.get("metrics"),
        "rtc_stats": state.get("rtcStats"),
    }
    (ARTIFACTS / f"page-{transport}.json").write_text(json.dumps(record, indent=2))
    print(f"browser v2v over {transport}: {turn['v2vMs']:.0f} ms")
    assert not state["errors"], state["errors"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_talking_over_the_agent_stops_its_audio_in_the_browser(
    launch: Any, server: LocalServer, tmp_path: Path, transport: str
) -> None:
    wav = mic_wav(
        tmp_path / "barge.wav",
        [1.5, "Tell me a long story about a brave knight and a dragon.", 3.0,
         "Wait, what is the capital of Italy?", 20.0],
    )  # fmt: skip
    page = await _open(launch, server, wav, transport)
    # The second utterance starts while the agent is answering the first: it is cut off.
    await page.wait_for_function("window.voxloop.clears >= 1", timeout=40_000)
    await page.wait_for_timeout(400)
    state = await _state(page)
    first = state["turns"]["1"]
    assert first["interrupted"], first
    assert state["overlapAt"] is not None, "the page never heard the user over the agent"
    # The agent's audio went quiet soon after the user started talking over it, and stayed quiet.
    stop_ms = (state["lastOutputLoudAt"] - state["overlapAt"]) * 1000
    assert stop_ms < 500, stop_ms
    assert not state["turns"].get("2", {}).get("audioStarted"), "the next reply is playing: too late to judge"
    # The interruption is answered as a turn of its own.
    await page.wait_for_function(
        "Object.values(window.voxloop.turns).some(t => t.turnId > 1 && t.heard)", timeout=40_000
    )
    state = await _state(page)
    second = next(t for t in state["turns"].values() if t["turnId"] > 1 and t.get("heard"))
    assert "italy" in second["user"].lower(), second
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"barge-in-{transport}.png"), full_page=True)
    print(f"browser stop latency over {transport}: {stop_ms:.0f} ms")


async def test_when_webrtc_cannot_connect_the_page_falls_back_to_websocket_audio(
    launch: Any, server: LocalServer, tmp_path: Path
) -> None:
    # Without loopback WebRTC, Chromium has no ICE path in the namespace: "automatic" must still talk.
    # The microphone plays from the moment it opens; WebRTC takes up to ~11 s to give up first.
    wav = mic_wav(tmp_path / "question.wav", [16.0, "What is the capital of France?", 20.0])
    page = await _page(launch, server, wav, "auto", loopback_webrtc=False)
    await page.wait_for_function("window.voxloop.phase === 'live'", timeout=30_000)
    state = await _state(page)
    assert state["transport"] == "websocket" and state["fallbackReason"], state
    assert "using WebSocket audio" in await page.locator("#notice").inner_text()
    user = page.locator(".msg.user:not(.partial)").first
    await user.wait_for(timeout=30_000)
    assert "capital" in (await user.inner_text()).lower()


async def test_a_denied_microphone_is_explained_in_plain_words(
    launch: Any, server: LocalServer, tmp_path: Path
) -> None:
    wav = mic_wav(tmp_path / "silence.wav", [1.0])
    page = await _page(launch, server, wav, "auto", allow_mic=False)
    notice = page.locator("#notice")
    await notice.wait_for(state="visible", timeout=10_000)
    assert "Microphone access was denied" in await notice.inner_text()
    assert await page.evaluate("window.voxloop.phase") == "idle"
    assert await page.get_by_role("button", name="Connect").is_enabled()


async def test_the_voice_select_names_the_voices_previews_one_and_the_next_session_keeps_it(
    launch: Any, server: LocalServer, tmp_path: Path
) -> None:
    wav = mic_wav(tmp_path / "quiet.wav", [40.0])
    page = await _open(launch, server, wav, "websocket")
    await page.wait_for_function("window.voxloop.voices.length >= 4", timeout=10_000)
    select = page.get_by_label("Voice", exact=True)
    names = await select.locator("option").all_inner_texts()
    assert {"Heart", "Ember", "Pip", "Basalt"} <= set(names), names
    assert await select.input_value() == "heart"
    await select.select_option("basalt")
    assert "male" in await page.locator("#voice-about").inner_text()  # its description
    await page.get_by_role("button", name="Preview").click()
    await page.wait_for_function("window.voxloop.preview && window.voxloop.preview.played", timeout=20_000)
    state = await _state(page)
    assert state["preview"]["voice"] == "basalt" and state["preview"]["seconds"] > 1.0, state["preview"]
    # The choice is the session's and is remembered: a new connection opens in that voice.
    await page.reload()
    await page.get_by_role("button", name="Connect").click()
    await page.wait_for_function("window.voxloop.phase === 'live' && window.voxloop.voice", timeout=20_000)
    assert await page.evaluate("window.voxloop.voice") == "basalt"
    assert await page.get_by_label("Voice", exact=True).input_value() == "basalt"
    assert not (await _state(page))["errors"]
