"""The WebRTC transport's pieces that need no peer: the outbound track, frame conversion, ICE config."""

from __future__ import annotations

import aioice.ice
import numpy as np
from av import AudioFrame

from agent.config import Settings
from streaming.rtc import (
    RTC_FRAME,
    RTC_RATE,
    OutboundTrack,
    offer_loopback_candidates,
    rtc_configuration,
    to_mono_pcm,
)


class Clock:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


async def test_the_track_sends_queued_frames_then_silence_with_increasing_pts() -> None:
    clock = Clock()
    track = OutboundTrack(clock)
    track.push_pcm(np.full(1600, 1000, np.int16), 16000)  # 100 ms at 16 kHz (the resampler keeps a tail)
    frames = []
    for _ in range(8):
        frames.append(await track.recv())
        clock.now += 0.02
    assert [f.pts for f in frames] == [i * RTC_FRAME for i in range(8)]
    assert all(f.sample_rate == RTC_RATE and f.samples == RTC_FRAME for f in frames)
    loud = [int(np.abs(f.to_ndarray()).max()) > 500 for f in frames]
    assert loud[:3] == [True] * 3 and loud[-1] is False  # audio, then silence when nothing is queued
    assert track.silent_frames == loud.count(False)


async def test_clearing_the_track_drops_what_is_queued() -> None:
    track = OutboundTrack(Clock())
    for _ in range(5):
        track.push(np.full(RTC_FRAME, 1000, np.int16).tobytes())
    assert abs(track.queued_s - 0.1) < 1e-9
    track.clear()
    frame = await track.recv()
    assert int(np.abs(frame.to_ndarray()).max()) == 0


def test_decoded_stereo_frames_become_mono() -> None:
    stereo = np.zeros((1, 2 * 960), np.int16)
    stereo[0, 0::2], stereo[0, 1::2] = 1000, 3000  # left, right interleaved
    frame = AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
    frame.sample_rate = 48000
    pcm, rate = to_mono_pcm(frame)
    assert rate == 48000 and pcm.shape == (960,) and np.all(pcm == 2000)


def test_no_ice_server_unless_configured() -> None:
    assert rtc_configuration(Settings()).iceServers == []
    configured = rtc_configuration(Settings.of(webrtc_ice_servers="stun:10.0.0.1:3478"))
    assert configured.iceServers is not None and configured.iceServers[0].urls == ["stun:10.0.0.1:3478"]


def test_loopback_is_offered_as_a_host_candidate_when_asked() -> None:
    try:
        offer_loopback_candidates(True)
        assert "127.0.0.1" in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)
        offer_loopback_candidates(False)
        assert "127.0.0.1" not in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)
    finally:
        offer_loopback_candidates(False)
