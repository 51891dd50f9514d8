"""``voxloop bench --tts``: the voices, measured.

Against a server (its own, with an empty voices folder, unless ``--url`` is given):
- per voice, over the REST speech API: time to the first byte and to the last, p50/p95/p99, over the
  corpus sentences (pcm, so no encoder is timed), after one unmeasured request (engines load lazily);
- per voice, in process on one thread: the real-time factor of the engine itself;
- derived voices enrolled from Debian's flite speakers (kal, awb, rms, slt) through ``POST /v1/voices``,
  and for each, the speaker similarity to its reference on held-out sentences against the base voice's;
- the speaker-similarity matrix of every built-in and derived voice (their speech on held-out
  sentences), and the round-trip word error rate of each (Whisper, the server's ASR model).
"""

from __future__ import annotations

import io
import json
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import numpy as np
import soxr

from agent.config import Settings
from agent.engines import load_asr, load_tts
from agent.voices.embedding import cosine, shared_encoder
from streaming.devtools.references import SENTENCES, flite, have_flite, wer
from streaming.encoders import encoder

HELD_OUT = SENTENCES[12:16]  # never used to fit a voice
ENROL_TEXT = " ".join(SENTENCES[:8])


def post_json(url: str, payload: dict[str, Any], timeout_s: float = 120.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, json.dumps(payload).encode(), {"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def post_form(
    url: str, fields: dict[str, str], files: dict[str, tuple[str, bytes]], timeout_s: float = 120.0
) -> tuple[int, dict[str, Any]]:
    """A multipart/form-data POST (stdlib only) -> status and the JSON answer."""
    boundary = uuid.uuid4().hex
    body = io.BytesIO()
    for name, value in fields.items():
        body.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    for name, (filename, data) in files.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        body.write(f"{head}Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    body.write(f"--{boundary}--\r\n".encode())
    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    request = urllib.request.Request(url, body.getvalue(), headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def get_json(url: str, timeout_s: float = 60.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as r:
        return json.loads(r.read())


def wav_bytes(audio: np.ndarray, rate: int) -> bytes:
    out = encoder("wav", rate)
    return out.feed(np.clip(audio * 32767.0, -32768, 32767).astype(np.int16)) + out.close()


def timed_speech(http: str, text: str, voice: str) -> tuple[float, float, np.ndarray]:
    """Seconds to the first and the last byte of a pcm speech request, and the audio (24 kHz)."""
    request = urllib.request.Request(
        http + "/v1/audio/speech",
        json.dumps({"input": text, "voice": voice, "response_format": "pcm"}).encode(),
        {"content-type": "application/json"},
    )
    started = time.perf_counter()
    first = None
    parts = []
    with urllib.request.urlopen(request, timeout=120) as r:
        while chunk := r.read1(65536):
            if first is None:
                first = time.perf_counter() - started
            parts.append(chunk)
    last = time.perf_counter() - started
    pcm = np.frombuffer(b"".join(parts), "<i2").astype(np.float32) / 32768.0
    return first or last, last, pcm


def run(http: str, turns: int, *, enrol: bool = True) -> dict[str, Any]:
    from streaming.devtools.bench import percentiles

    encoder_ = shared_encoder()
    rss_before = get_json(http + "/healthz")["rss_mb"]
    listed = get_json(http + "/v1/voices")
    voices = [v["id"] for v in listed["data"] if v["builtin"]]
    derived: dict[str, dict[str, Any]] = {}
    if enrol and have_flite():
        for speaker in ("kal", "awb", "rms", "slt"):
            audio, rate = flite(ENROL_TEXT, speaker)
            started = time.perf_counter()
            status, record = post_form(
                http + "/v1/voices",
                {"name": f"like {speaker}", "id": f"bench-{speaker}"},
                {"audio": (f"{speaker}.wav", wav_bytes(audio, rate))},
            )
            if status != 201:
                raise RuntimeError(f"enrolling {speaker}: {status} {record}")
            target = encoder_.embed(*flite(" ".join(HELD_OUT), speaker))
            derived[record["id"]] = {
                "reference": speaker,
                "enrol_s": round(time.perf_counter() - started, 2),
                "params": record["params"],
                "fit": record["reference"],
                "target": target,
            }
            voices.append(record["id"])
    sentences = [SENTENCES[i % len(SENTENCES)] for i in range(turns)]
    latency: dict[str, Any] = {}
    embeddings: dict[str, np.ndarray] = {}
    held_audio: dict[str, list[np.ndarray]] = {}
    for voice in voices:
        firsts, lasts = [], []
        timed_speech(http, "Warm up.", voice)  # an engine loads on its first voice's first request
        for text in sentences:
            first, last, _ = timed_speech(http, text, voice)
            firsts.append(first * 1e3)
            lasts.append(last * 1e3)
        held_audio[voice] = [timed_speech(http, text, voice)[2] for text in HELD_OUT]
        embeddings[voice] = encoder_.embed(np.concatenate(held_audio[voice]), 24000)
        latency[voice] = {"first_byte_ms": percentiles(firsts), "last_byte_ms": percentiles(lasts)}
    health = get_json(http + "/healthz")
    asr = load_asr(Settings())
    round_trip = {}
    for voice in voices:
        errors = []
        for text, audio in zip(HELD_OUT, held_audio[voice], strict=True):
            heard = asr.transcribe(np.asarray(soxr.resample(audio, 24000, 16000), np.float32), final=True)
            errors.append(wer(text, heard.text))
        round_trip[voice] = round(float(np.mean(errors)), 4)
    base = embeddings.get("heart")
    for voice, info in derived.items():
        target = info.pop("target")
        info["similarity_to_reference"] = round(cosine(embeddings[voice], target), 3)
        info["base_similarity_to_reference"] = round(cosine(base, target), 3) if base is not None else None
    matrix = {a: {b: round(cosine(embeddings[a], embeddings[b]), 3) for b in voices} for a in voices}
    return {
        "voices": voices,
        "latency": latency,
        "rtf_one_thread": engine_rtf(voices, sentences, derived) | torch_vits_rtf(voices, sentences),
        "round_trip_wer": round_trip,
        "similarity": matrix,
        "derived": derived,
        "server_rss_mb": {"before": rss_before, "after": health["rss_mb"], "peak": health["peak_rss_mb"]},
    }


def engine_rtf(voices: list[str], sentences: list[str], derived: dict[str, Any]) -> dict[str, Any]:
    """Synthesis time over audio time, per voice, on this process's own engines (one thread each)."""
    from streaming.devtools.bench import percentiles

    tts = load_tts(Settings())
    out = {}
    for voice in voices:
        if voice in derived:  # an enrolled voice lives in the server's folder: same engine, its params
            continue
        ratios = []
        tts.synthesize("Warm up.", voice)
        for text in sentences:
            started = time.perf_counter()
            audio = tts.synthesize(text, voice)
            ratios.append((time.perf_counter() - started) / (len(audio) / tts.sample_rate))
        out[voice] = percentiles(ratios)
    return out


def torch_vits_rtf(voices: list[str], sentences: list[str]) -> dict[str, Any]:
    """Piper voices again on voxloop's torch VITS (one thread), as "ID (torch)"."""
    import torch

    from streaming.devtools.bench import percentiles

    tts = load_tts(Settings.of(tts_piper_runtime="torch"))
    torch.set_num_threads(1)
    out = {}
    for voice in voices:
        if voice not in tts.library or tts.library.get(voice).engine != "piper":
            continue
        tts.synthesize("Warm up.", voice)
        ratios = []
        for text in sentences:
            started = time.perf_counter()
            audio = tts.synthesize(text, voice)
            ratios.append((time.perf_counter() - started) / (len(audio) / tts.sample_rate))
        out[f"{voice} (torch)"] = percentiles(ratios)
    return out


def table(report: dict[str, Any]) -> str:
    voices = report["voices"]
    lines = [
        f"{'voice':16}{'first byte p50':>16}{'p95':>8}{'p99':>8}{'last p50':>10}{'RTF p50':>9}{'WER':>7}"
    ]
    for v in voices:
        first, last = report["latency"][v]["first_byte_ms"], report["latency"][v]["last_byte_ms"]
        rtf = report["rtf_one_thread"].get(v, {}).get("p50")
        rtf_text = f"{rtf:9.3f}" if rtf is not None else f"{'-':>9}"
        lines.append(
            f"{v:16}{first['p50']:16.0f}{first['p95']:8.0f}{first['p99']:8.0f}{last['p50']:10.0f}"
            f"{rtf_text}{100 * report['round_trip_wer'][v]:6.1f}%"
        )
    lines.append("speaker similarity (cosine of embeddings, held-out sentences):")
    lines.append(" " * 14 + "".join(f"{v[-8:]:>9}" for v in voices))
    for a in voices:
        lines.append(f"{a:14}" + "".join(f"{report['similarity'][a][b]:9.2f}" for b in voices))
    for name, rtf in report["rtf_one_thread"].items():
        if name not in voices:
            lines.append(f"{name}: RTF p50 {rtf['p50']:.3f} on one thread")
    for voice, info in report["derived"].items():
        lines.append(
            f"{voice}: to flite {info['reference']} {info['similarity_to_reference']:.2f} "
            f"(heart {info['base_similarity_to_reference']:.2f}), enrolled in {info['enrol_s']:.1f} s"
        )
    rss = report["server_rss_mb"]
    lines.append(f"server RSS: {rss['before']} MB before, {rss['after']} MB after, peak {rss['peak']} MB")
    return "\n".join(lines)
