"""One phone call over a provider's media-stream WebSocket, as a codec: one call is one session.

Inbound: the provider's ``start`` opens the session (8 kHz mu-law, the ``phone`` turn-taking profile
or the call's ``profile`` parameter, the call's ``greeting`` or the configured one); ``media`` is
mu-law 8 kHz user audio; ``dtmf`` a key press; ``stop`` hangs up. Outbound: each 20 ms frame of agent
audio (8 kHz, tagged with its turn) becomes a ``media`` message; every ``MARK_EVERY_S`` of a reply's
audio (and at its end) a ``mark`` named ``<turn>:<samples>`` follows: the provider echoes it once the
audio before it has played to the caller, and the echo becomes the session's playback position (what
memory keeps when the caller cuts in). On barge-in (``AudioClear``) a ``clear`` goes out: the provider
drops what it buffered.

Bad input (invalid base64, oversized payloads, media before ``start``, unknown events, a foreign mark)
raises a coded ProtocolError: the connection logs it with the call id and drops it, and the call goes
on. Media streams have no error message to send back, so errors, like the conversation's transcript,
go to the log. Adding another provider is one serializer module (``twilio.py`` is Twilio's).
"""

from __future__ import annotations

import logging

from agent.config import SessionOptions, Settings
from agent.errors import ProtocolError
from agent.events import (
    AudioClear,
    AudioFrame,
    ConfigureIn,
    DtmfIn,
    DtmfReceived,
    Output,
    PlaybackIn,
    ResponseAudioDone,
    ResponseDone,
    TranscriptFinal,
)
from streaming.codecs import mulaw_decode, mulaw_encode
from streaming.connection import HangUp, Meaning, OpenAudio, Outgoing, RtcAnswer, WireAudio
from streaming.protocols.twilio import Connected, Dtmf, MarkPlayed, Media, Serializer, Started, Stopped

log = logging.getLogger(__name__)

PHONE_RATE = 8000
MARK_EVERY_S = 0.2


class PhoneCodec:
    name = "call"

    def __init__(self, serializer: Serializer, settings: Settings) -> None:
        self.serializer = serializer
        self.settings = settings
        self.call_id = "(before start)"
        self.stream_id = ""
        self.started = False
        self._turn: int | None = None  # the reply whose audio is going out
        self._turn_samples = 0
        self._marked_samples = 0
        self.marks_sent = 0
        self.marks_played = 0
        self.dropped_messages = 0

    # -- inbound ----------------------------------------------------------------------------------
    def opening(self) -> list[Meaning]:
        return []  # the client speaks first

    def decode(self, message: str | bytes) -> list[Meaning]:
        try:
            return self._decode(message)
        except ProtocolError as e:
            self.dropped_messages += 1
            log.warning("call %s: dropped a message: %s: %s", self.call_id, e.code, e.message)
            raise

    def _decode(self, message: str | bytes) -> list[Meaning]:
        event = self.serializer.parse(message)
        match event:
            case Connected():
                return []
            case Started():
                return self._start(event)
            case Media(payload=payload):
                self._require_start()
                return [WireAudio(mulaw_decode(payload))]
            case MarkPlayed(name=name):
                return self._mark_played(name)
            case Dtmf(digit=digit):
                self._require_start()
                return [DtmfIn(digit)]
            case Stopped():
                log.info("call %s: stop", self.call_id)
                return [HangUp()]

    def _require_start(self) -> None:
        if not self.started:
            raise ProtocolError("media stream message before 'start'", code="not_configured")

    def _start(self, start: Started) -> list[Meaning]:
        if self.started:
            raise ProtocolError("a second 'start' in one stream", code="already_configured")
        if start.encoding != "audio/x-mulaw" or start.sample_rate != PHONE_RATE or start.channels != 1:
            raise ProtocolError(
                f"unsupported media format {start.encoding} {start.sample_rate} Hz x{start.channels}",
                code="unsupported_sample_rate",
            )
        options = SessionOptions(
            profile=start.parameters.get("profile") or self.settings.phone.profile,
            greeting=start.parameters.get("greeting") or self.settings.phone.greeting or None,
            voice=start.parameters.get("voice") or None,
        )
        self.started = True
        self.call_id, self.stream_id = start.call_id, start.stream_id
        log.info(
            "call %s: started (stream %s, profile %s, parameters %s)",
            self.call_id,
            self.stream_id,
            options.profile,
            sorted(start.parameters),
        )
        return [OpenAudio(PHONE_RATE, PHONE_RATE, "phone", session_id=self.call_id), ConfigureIn(options)]

    def _mark_played(self, name: str) -> list[Meaning]:
        turn, _, samples = name.partition(":")
        if not (turn.isdigit() and samples.isdigit()):
            raise ProtocolError(f"a mark this server did not send: {name!r}", code="bad_field")
        self.marks_played += 1
        # After a clear the provider echoes every pending mark at once, played or not: only marks of
        # the reply going out now count (the session keeps the latest report of each turn).
        if self.started and int(turn) == self._turn:
            return [PlaybackIn(int(turn), int(samples) / PHONE_RATE)]
        return []

    # -- outbound ---------------------------------------------------------------------------------
    def encode(self, output: Output | RtcAnswer) -> list[Outgoing]:
        match output:
            case AudioFrame(turn_id=tid, pcm=pcm):
                out = []
                if tid != self._turn:  # the first frame of a reply: its marks count from here
                    out += self._mark()
                    self._turn, self._turn_samples, self._marked_samples = tid, 0, 0
                out.append(Outgoing(self.serializer.media(self.stream_id, mulaw_encode(pcm)), audio=True))
                self._turn_samples += len(pcm)
                if self._turn_samples - self._marked_samples >= MARK_EVERY_S * PHONE_RATE:
                    out += self._mark()
                return out
            case AudioClear():
                self._turn = None
                return [Outgoing(self.serializer.clear(self.stream_id))]
            case ResponseAudioDone():
                return self._mark()
            case TranscriptFinal(turn_id=tid, text=text):
                log.info("call %s: turn %d: caller: %s", self.call_id, tid, text)
            case ResponseDone(turn_id=tid, text=text, interrupted=interrupted):
                cut = " (interrupted; the caller heard this much)" if interrupted else ""
                log.info("call %s: turn %d: agent%s: %s", self.call_id, tid, cut, text)
            case DtmfReceived(digit=digit):
                log.info("call %s: DTMF %s", self.call_id, digit)
            case _:  # the rest (errors included: the connection logs them) has no place on a call
                pass
        return []

    def _mark(self) -> list[Outgoing]:
        if self._turn is None or self._turn_samples <= self._marked_samples:
            return []
        self._marked_samples = self._turn_samples
        self.marks_sent += 1
        return [Outgoing(self.serializer.mark(self.stream_id, f"{self._turn}:{self._turn_samples}"))]

    def ended(self, hung_up: bool) -> None:
        if not hung_up:
            log.warning("call %s: the stream ended without 'stop'", self.call_id)
        log.info(
            "call %s: ended (%d marks sent, %d played back, %d bad messages dropped)",
            self.call_id,
            self.marks_sent,
            self.marks_played,
            self.dropped_messages,
        )
