"""The CLI with the real embedded models."""

from __future__ import annotations

import subprocess
import sys
import wave
from pathlib import Path

import pytest

from streaming.devtools.references import SENTENCES, flite, have_flite
from streaming.devtools.ttsbench import wav_bytes
from tests.support import wer

SENTENCE = "The quick brown fox jumps over the lazy dog."


def voxloop(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streaming.cli", *args], capture_output=True, text=True, timeout=timeout_s
    )


@pytest.fixture(scope="module")
def spoken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "fox.wav"
    done = voxloop("say", SENTENCE, "-o", str(path), "--rate", "16000")
    assert done.returncode == 0, done.stderr
    return path


def test_say_writes_a_wav_at_the_asked_rate(spoken: Path) -> None:
    with wave.open(str(spoken)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        assert 1.5 < w.getnframes() / 16000 < 6


@pytest.mark.parametrize(("model", "bound"), [("tiny.en", 0.25), ("base", 0.15)])
def test_transcribe_with_either_embedded_asr_model(spoken: Path, model: str, bound: float) -> None:
    done = voxloop("transcribe", str(spoken), "--asr-model", model)
    assert done.returncode == 0, done.stderr
    assert wer(SENTENCE, done.stdout) <= bound, done.stdout


def test_transcribe_reports_a_bad_file_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wav at all")
    done = voxloop("transcribe", str(bad))
    assert done.returncode == 2
    assert "cannot read WAV" in done.stderr


def test_models_verify_rehashes_every_selected_model() -> None:
    done = voxloop("models", "verify")
    assert done.returncode == 0, done.stderr
    for role in ("asr", "llm", "tts", "vad"):
        assert f"{role}: " in done.stdout and " ok " in done.stdout


def test_models_list_names_each_package() -> None:
    done = voxloop("models", "list")
    assert done.returncode == 0
    assert "qwen2.5-coder-0.5b-instruct-q4_k_m" in done.stdout and "whisper-base" in done.stdout


def test_an_unknown_model_is_a_clear_error() -> None:
    done = voxloop("serve", "--llm-model", "/nonexistent/model.gguf", "--port", "0")
    assert done.returncode == 2 and "neither an embedded model nor a GGUF file" in done.stderr


def test_serve_help_lists_every_setting_with_its_variable() -> None:
    done = voxloop("serve", "--help")
    assert "--endpoint-silence-s" in done.stdout and "VOXLOOP_ENDPOINT_SILENCE_S" in done.stdout


def test_bench_runs_turns_and_writes_its_report(tmp_path: Path) -> None:
    """A smoke test of the ruler: `voxloop bench --turns 10` finishes and writes its files. Its
    figures are not asserted (speed is measured, not asserted)."""
    import json

    done = voxloop("bench", "--turns", "10", "--out", str(tmp_path), timeout_s=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "v2v at the client" in done.stdout and "premature turns" in done.stdout
    report = json.loads((tmp_path / "bench.json").read_text())
    assert len(report["turns"]) == 10 and report["conditions"]["transport"] == "websocket"
    assert {"v2v_ms", "premature", "timeline_ms", "transcript"} <= set(report["turns"][0])
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_over_the_realtime_api_answers_every_turn(tmp_path: Path) -> None:
    """`voxloop bench --transport realtime`: the corpus through /v1/realtime; figures not asserted."""
    import json

    done = voxloop("bench", "--turns", "3", "--transport", "realtime", "--out", str(tmp_path), timeout_s=600)
    assert done.returncode == 0, done.stderr[-3000:]
    turns = json.loads((tmp_path / "bench.json").read_text())["turns"]
    assert len(turns) == 3
    assert all(t["v2v_ms"] is not None and not t["premature"] and t["replies"] == 1 for t in turns)
    assert all(t["transcript"] for t in turns)


def test_bench_barge_in_runs_and_writes_its_report(tmp_path: Path) -> None:
    """Smoke test of `voxloop bench --barge-in`: one agent turn of each kind; figures not asserted."""
    import json

    done = voxloop("bench", "--barge-in", "--turns", "5", "--out", str(tmp_path), timeout_s=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "false interruptions with -6 dB echo" in done.stdout
    report = json.loads((tmp_path / "bargein.json").read_text())
    modes = [t["mode"] for t in report["turns"]]
    assert modes == ["interrupt", "echo", "echo+interrupt", "backchannel", "nonlexical"]


@pytest.mark.skipif(not have_flite(), reason="needs Debian's flite (apt-get install flite)")
def test_voices_list_enrol_preview_and_remove(tmp_path: Path) -> None:
    voices = ["--tts-voices-dir", str(tmp_path / "voices")]
    listed = voxloop("voices", "list", *voices)
    assert listed.returncode == 0, listed.stderr
    assert all(v in listed.stdout for v in ("heart", "ember", "pip", "basalt"))
    audio, rate = flite(" ".join(SENTENCES[:8]), "rms")
    reference = tmp_path / "rms.wav"
    reference.write_bytes(wav_bytes(audio, rate))
    enrolled = voxloop("voices", "enrol", "rmsish", str(reference), "--name", "Like rms", *voices)
    assert enrolled.returncode == 0, enrolled.stderr
    assert "similarity to the reference" in enrolled.stdout
    assert (tmp_path / "voices" / "rmsish.json").exists()
    again = voxloop("voices", "enrol", "rmsish", str(reference), *voices)
    assert again.returncode == 2 and "already exists" in again.stderr
    sample = tmp_path / "sample.wav"
    preview = voxloop("voices", "preview", "rmsish", "-o", str(sample), *voices)
    assert preview.returncode == 0, preview.stderr
    with wave.open(str(sample)) as w:
        assert w.getnframes() / w.getframerate() > 2.0
    said = voxloop("say", "Hello there.", "-o", str(tmp_path / "b.wav"), "--voice", "basalt", *voices)
    assert said.returncode == 0, said.stderr
    removed = voxloop("voices", "remove", "rmsish", *voices)
    assert removed.returncode == 0 and not (tmp_path / "voices" / "rmsish.json").exists()
    builtin = voxloop("voices", "remove", "heart", *voices)
    assert builtin.returncode == 2 and "built in" in builtin.stderr
