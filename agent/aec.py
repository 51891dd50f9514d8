"""Server-side acoustic echo cancellation: WebRTC's AEC3 (``pywebrtc-audio``, Apache-2.0) on the input,
with the audio the server sent as the far-end reference.

Transports without the browser's own echo cancellation (raw WebSocket PCM, telephony) hear the agent
come back: a phone's handset or hybrid echo, a speakerphone, a client that loops its playback. The
gate in agent/echo.py only keeps that echo from *starting* speech; it cannot hear a user through it,
and ASR of speech over the agent transcribes both voices. AEC3 subtracts the echo from the input
itself, before VAD and ASR: a user talking over the agent is heard as the user. (AEC3 damps the start
of double talk, and at times removes a user who talks over the agent altogether: see below.)

The reference is placed on the input timeline: a frame the server sends while the input stands at
sample ``at`` is far-end audio at ``at`` (frames sent in a burst are laid end to end; silence between
replies is zeros). The echo of it arrives later (the playout lead, the network both ways, the echo
path): AEC3's own delay estimator finds that delay, a lag of up to a few hundred milliseconds, and
follows it when it drifts. AEC3 works in 10 ms frames: input is processed in whole frames, and what is
left over waits for the next chunk (the input stream lags by less than 10 ms when chunks are not
whole frames; with 20 ms chunks it does not lag at all).

AEC3 has one failure that matters more than any other here: where there is **no** echo at all (a
headset, a phone with a good handset), its suppressor still takes the user's voice for echo while the
agent talks and removes it (35-70 dB, measured on the synthetic talkers of tests/unit/test_aec.py):
the user could never interrupt. So the canceller's output is used only once an echo is *detected*:
the input's loudness envelope (10 ms frames) follows the reference's at some delay of 0-600 ms
(normalised correlation >= ``DETECT``, over the last 2 s while the agent talks, at one delay in three
looks in a row; two independent voices reached 0.67-0.86, an echo 0.95-0.99). Until then, and again
after ``FORGET_S`` of agent speech with clearly no echo in the input (< ``NO_ECHO``), the input
passes unchanged (AEC3
keeps learning underneath); the echo gate still stands in front of speech onsets, except where the
canceller has found nothing of the agent's current run of speech in the input (``echo_absent``:
``ABSENT_LOOKS`` looks in a row where the input stayed ``ABSENT_DB`` under the agent's voice for
600 ms, before anyone talked over it): then what comes in is the user alone, and a gate that learned
their loudness as the echo's would cut them into fragments (measured over WebRTC: "Wait." cut off
the sentence, taken for a backchannel, the agent stopped 0.45 s later than otherwise). Absence holds
until the agent falls silent for 1.5 s (its next reply is looked at afresh) or a look correlates
like an echo (``DETECT``).

AEC3's suppressor has a second failure: in double talk it can take the user's voice for echo and
remove it, a whole sentence at a time (measured on live sessions: a user 6-10 dB louder than the
echo came out 40-50 dB down for 1.4 s, so the interruption was never heard). The canceller predicts
how loud the echo can be from the reference at the echo's delay (the loudest 10 ms of the 50 ms before
it, a room's tail) and the echo's level learned on frames of echo alone (``erl_db``); a 10 ms frame
that comes in ``DOUBLE_TALK_DB`` louder than that for 30 ms in a row, and that AEC3 cut by more than
``EATEN_DB``, is the user: it passes as it came, echo and all (6+ dB under them). AEC3 does not eat a user
talking over a loud echo whole but in pieces, a syllable here, 200 ms there (measured on phone calls
over a -6 dB handset echo: the pieces left read as speech to Silero at 0.01-0.4, the same audio whole
at 0.8-0.9), so for 300 ms after the user's last confirmed frame whatever AEC3 eats passes as it came
too. Where input passes raw the echo gate judges it against the raw echo's level (``raw_echo_return``),
not what is left of the echo after AEC3, so an echo passed raw by mistake still cannot start speech;
and the gate does not learn the echo's level from windows that hold more than echo (``near_end``).

What AEC3 leaves of the echo, Whisper still hears as words ("No.", "What?", "the tide.": every false
interruption in a 60-turn trace of the echo barge-in bench), so the words of an overlap cannot say
whether it was the user. Its loudness can: ``louder_than_echo_s`` is the longest run of 10 ms frames
that came in ``TALKER_DB`` over the echo predicted for them. A user over a -6 dB echo keeps it up for
80-380 ms, what is left of the echo for 0-40 ms. The prediction uses the delay measured so far, and
the echo path can change while the agent is quiet (a client's buffer, another route): a reply whose
echo came 100 ms sooner than the last one's read 90-200 ms "louder than the echo" at its start. So
in each new run of agent audio (after 1.5 s of silence, or a new reply: ``reply_started``), until a
look finds the delay again (``DETECT``, once the run is longer than any delay searched), this
measure lets the echo come from any delay under the last one, or up to ``LATER_FRAMES`` over it.
Only this measure: what AEC3's output keeps of the user (above) goes on using the delay it knows,
since a wider prediction would swallow a caller who talks early in a reply.

One canceller per session (its filter is that call's echo path); not thread-safe: the session's input
task is its only user.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

RATE = 16_000
FRAME = RATE // 100  # AEC3's 10 ms frame
HISTORY_S = 4.0  # far-end audio kept: longer than any echo path plus the playout lead
DETECT = 0.93  # envelope correlation at the best delay that says "the agent's voice is in the input"
WINDOW_FRAMES = 200  # 2 s of 10 ms frames compared
MAX_LAG_FRAMES = 60  # delays searched: 0-600 ms
DETECT_LOOKS = 3  # ... at the same delay (within 20 ms) in this many looks in a row, 100 ms apart
NO_ECHO = 0.5  # below this the input holds nothing of the agent (a user over an echo scores 0.5-0.9)
FORGET_S = 6.0  # this much agent speech with no echo in the input: back to passing the input through
ACTIVE_DBFS = -50.0  # a reference frame louder than this is the agent talking
DOUBLE_TALK_DB = 6.0  # input this much louder than the predicted echo: the user is talking over it
EATEN_DB = 20.0  # ... and if AEC3 took more than this off such a frame, it took the user
TAIL_FRAMES = 5  # an echo frame can come from the reference up to 50 ms before its delay (a room)
HOLD_FRAMES = 30  # keep what AEC3 eats for 300 ms after the user's frames (it eats them in pieces)
CONFIRM_FRAMES = 3  # ... once they have been louder than the echo for 30 ms in a row
NEAR_END_DB = 3.0  # input this much louder than the predicted echo holds someone else too
TALKER_DB = 6.0  # ... this much louder, frame after frame: a voice of its own (``louder_than_echo_s``)
ABSENT_LOOKS = 3  # looks in a row with the input quiet while the agent talks: no echo in this run
ABSENT_FRAMES = 60  # ... each over the last 600 ms (longer than an echo's delay), the agent talking
ABSENT_DB = 35.0  # ... half of it at least, and the input this far under it (an echo: 6-30 dB)
NEW_RUN_FRAMES = 150  # the agent silent this long (1.5 s): its next reply is looked at afresh
LATER_FRAMES = 10  # ... until a look finds its delay again, its echo may come this much later too


class FarEnd:
    """The agent's audio on the input timeline (a ring of ``HISTORY_S``)."""

    def __init__(self) -> None:
        self._ring = np.zeros(int(HISTORY_S * RATE), np.int16)
        self.written = 0  # the input position up to which far-end audio (or silence) is laid down

    def add(self, pcm16k: npt.NDArray[np.int16], at: int) -> None:
        """Audio the server sent while the input stood at sample ``at``."""
        start = max(at, self.written)
        if at > self.written:  # nothing was sent in between: silence
            self._put(np.zeros(at - self.written, np.int16), self.written)
        self._put(pcm16k, start)
        self.written = start + len(pcm16k)

    def slice(self, start: int, end: int) -> npt.NDArray[np.int16]:
        """Far-end audio for input samples [start, end): zeros where nothing was sent (or too long ago)."""
        out = np.zeros(end - start, np.int16)
        lo, hi = max(start, self.written - len(self._ring)), min(end, self.written)
        if hi > lo:
            idx = np.arange(lo, hi) % len(self._ring)
            out[lo - start : hi - start] = self._ring[idx]
        return out

    def _put(self, pcm: npt.NDArray[np.int16], start: int) -> None:
        if len(pcm) > len(self._ring):  # only the newest HISTORY_S can be kept
            start += len(pcm) - len(self._ring)
            pcm = pcm[-len(self._ring) :]
        idx = np.arange(start, start + len(pcm)) % len(self._ring)
        self._ring[idx] = pcm


class EchoCanceller:
    """AEC3 on one session's input. ``process`` returns the cleaned input, in whole 10 ms frames."""

    def __init__(self) -> None:
        from pywebrtc_audio import EchoCanceller as Aec3  # the optional native module, loaded on use

        self._aec = Aec3(sample_rate=RATE, num_channels=1)
        self.far = FarEnd()
        self._pending = np.zeros(0, np.int16)
        self.position = 0  # input samples processed (the cleaned stream's length)
        n = WINDOW_FRAMES + MAX_LAG_FRAMES
        self._near_env = np.full(n, -100.0)  # dBFS per 10 ms frame, newest last
        self._far_env = np.full(n, -100.0)
        self._frames = 0
        self.echo_detected = False
        self.echo_score = 0.0  # the last correlation measured
        self.echo_lag_ms = 0  # ... at this delay
        self._hits = 0  # looks in a row that found it at (about) the same delay
        self._quiet_s = 0.0  # agent speech heard without an echo in the input, since the last echo
        # The canceller looked at this run of agent speech and found clearly nothing of it in the
        # input (a headset, a client that cancels its own echo): what comes in is the user alone.
        self.echo_absent = False
        self._absent_looks = 0
        self.erl_db: float | None = None  # the echo's level relative to the reference (learned)
        self._erl: deque[float] = deque(maxlen=300)  # ... measured on 10 ms frames of echo alone
        self._hold = 0
        self._run = 0
        self.kept_frames = 0  # 10 ms frames where AEC3 would have removed the user (for tests, metrics)
        # How much louder than the predicted echo each recent 10 ms frame came in (dB), by frame
        # index on the input timeline: where it is well over, someone is talking over the agent.
        self._excess = np.full(int(HISTORY_S * RATE) // FRAME, -np.inf)
        self._raw = np.zeros(len(self._excess), bool)  # ... and whether it passed as it came
        # ... and over the echo from any delay it may come from now (``louder_than_echo_s``)
        self._louder = np.full(len(self._excess), -np.inf)
        self._new_reply = False  # a reply has begun: its first audio starts a new run
        self._run_age = 0  # reference frames since the current run of agent audio began
        self._run_sure = False  # ... and whether a look has found the echo's delay in it

    def reference(self, pcm16k: npt.NDArray[np.int16], at: int) -> None:
        self.far.add(pcm16k, at)

    def reply_started(self) -> None:
        """The agent begins a new reply: its echo may come by another path than the last one's (see
        the module docstring), however soon after it."""
        self._new_reply = True

    def process(self, near: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        buf = np.concatenate([self._pending, near]) if len(self._pending) else near
        n = len(buf) // FRAME * FRAME
        self._pending = buf[n:].copy()
        if n == 0:
            return np.zeros(0, np.int16)
        near = buf[:n]
        far = self.far.slice(self.position, self.position + n)
        out: npt.NDArray[np.int16] = np.asarray(self._aec.process(near, far), np.int16)
        self.position += n
        self._watch(near, far)
        if not self.echo_detected:
            idx = self._ring_slots(n)
            self._excess[idx], self._raw[idx], self._louder[idx] = -np.inf, False, -np.inf
            return near
        return self._keep_near_end(near, out)

    def _keep_near_end(
        self, near: npt.NDArray[np.int16], out: npt.NDArray[np.int16]
    ) -> npt.NDArray[np.int16]:
        """Undo AEC3 where it removed the user (see the module docstring): a 10 ms frame whose input
        is ``DOUBLE_TALK_DB`` louder than the echo the reference predicts, and that AEC3 took more
        than ``EATEN_DB`` off, is the user talking over the agent: it passes as it came (the echo
        under it stays, at least that much quieter). Frames that are echo alone teach the echo's
        level (``erl_db``: input relative to the reference)."""
        frames = len(near) // FRAME
        n_env = len(self._near_env)
        lag = self.echo_lag_ms // 10
        near_db = self._near_env[n_env - frames :]
        out_db = _dbfs(out.reshape(frames, FRAME))
        # The echo of a frame spreads over the room's tail: the loudest reference of the 50 ms before.
        predicted = self._echo_source_db(lag, n_env - frames)
        if self.erl_db is None:
            self.erl_db = self._initial_erl(lag)
        echo_db = predicted + self.erl_db
        idx = self._ring_slots(len(near))
        self._excess[idx] = np.where(near_db > ACTIVE_DBFS, near_db - echo_db, -np.inf)
        if self._run_sure:
            self._louder[idx] = self._excess[idx]
        else:  # the delay not found again in this run: the echo may come from any delay near it
            anywhere = self._echo_source_db(lag, n_env - frames, sure=False) + self.erl_db
            self._louder[idx] = np.where(near_db > ACTIVE_DBFS, near_db - anywhere, -np.inf)
        eaten = out_db < near_db - EATEN_DB
        louder = (near_db > echo_db + DOUBLE_TALK_DB) & eaten & (near_db > ACTIVE_DBFS)
        talking = np.zeros(frames, bool)
        for i in range(frames):
            # The user talks for longer than an echo the reference mispredicts for a moment: it takes
            # CONFIRM_FRAMES in a row; then a short hangover keeps the dips between syllables theirs.
            self._run = self._run + 1 if louder[i] else 0
            if self._run >= CONFIRM_FRAMES:
                self._hold = HOLD_FRAMES
                talking[i] = True
            elif self._hold > 0 and eaten[i]:
                self._hold -= 1
                talking[i] = True
            else:
                self._hold = 0
        echo_alone = eaten & ~talking & (predicted > ACTIVE_DBFS) & (near_db > ACTIVE_DBFS)
        self._erl.extend((near_db - predicted)[echo_alone].tolist())
        if len(self._erl) >= 20:
            self.erl_db = float(np.median(np.asarray(self._erl)))
        self._raw[idx] = talking
        if not talking.any():
            return out
        self.kept_frames += int(talking.sum())
        mask = np.repeat(talking, FRAME)
        kept: npt.NDArray[np.int16] = np.where(mask, near, out).astype(np.int16)
        return kept

    def near_end(self, start: int, end: int) -> bool:
        """Whether the input in [start, end) holds more than the agent's echo: some 10 ms frame in
        it came in ``NEAR_END_DB`` louder than the echo predicted for it."""
        if not self.echo_detected:
            return False
        return bool(np.any(self._frames_in(self._excess, start, end) > NEAR_END_DB))

    def louder_than_echo_s(self, start: int, end: int) -> float | None:
        """The longest run of 10 ms frames in [start, end) that came in ``TALKER_DB`` louder than
        any echo the agent's audio could have made of them, in seconds: a voice of its own over the
        agent (a user over a -6 dB echo: 80-380 ms in the barge-in bench); what AEC3 leaves of the
        echo, which Whisper still hears as words ("No.", "the tide."), has a few frames (0-40 ms).
        None while no echo is detected: nothing to measure against."""
        if not self.echo_detected:
            return None
        best = run = 0
        for louder in self._frames_in(self._louder, start, end) > TALKER_DB:
            run = run + 1 if louder else 0
            best = max(best, run)
        return best * FRAME / RATE

    def raw_echo_return(self, start: int, end: int) -> float:
        """If any of [start, end) passed as it came (the user over the echo), the echo's level in
        it relative to the reference (amplitude); else 0."""
        if not self.echo_detected or self.erl_db is None:
            return 0.0
        if not np.any(self._frames_in(self._raw, start, end)):
            return 0.0
        return float(10.0 ** (self.erl_db / 20.0))

    def _ring_slots(self, n: int) -> npt.NDArray[np.int64]:
        """The per-frame ring slots of the ``n`` input samples just processed."""
        first = (self.position - n) // FRAME
        return np.arange(first, first + n // FRAME) % len(self._excess)

    @staticmethod
    def _frames_in(ring: npt.NDArray[Any], start: int, end: int) -> npt.NDArray[Any]:
        """The entries of a per-frame ring for the 10 ms frames of input samples [start, end)."""
        lo, hi = start // FRAME, max(-(-end // FRAME), start // FRAME + 1)
        return ring[np.arange(max(lo, hi - len(ring)), hi) % len(ring)]

    def _echo_source_db(self, lag: int, first: int, sure: bool = True) -> npt.NDArray[np.float64]:
        """For each near-end frame from ``first`` to the newest: the loudest reference frame its echo
        can come from (``lag`` frames before it, or up to TAIL_FRAMES more: a room's tail; not
        ``sure`` of the delay, any delay under that, or up to LATER_FRAMES over it)."""
        env = self._far_env
        early, late = (lag, lag + TAIL_FRAMES) if sure else (0, lag + TAIL_FRAMES + LATER_FRAMES)
        return np.array([env[max(0, i - late) : i - early + 1].max() for i in range(first, len(env))])

    def _initial_erl(self, lag: int) -> float:
        """The echo's level relative to the reference from the envelopes that detected it."""
        n = len(self._near_env)
        far = self._echo_source_db(lag, n - WINDOW_FRAMES)
        near = self._near_env[n - WINDOW_FRAMES :]
        active = (far > ACTIVE_DBFS) & (near > ACTIVE_DBFS)
        return float(np.median((near - far)[active])) if active.any() else -6.0

    def _watch(self, near: npt.NDArray[np.int16], far: npt.NDArray[np.int16]) -> None:
        """Follow whether the agent's voice is in the input (see the module docstring)."""
        frames = len(near) // FRAME
        for env, pcm in ((self._near_env, near), (self._far_env, far)):
            new = _dbfs(pcm.reshape(frames, FRAME))[-len(env) :]
            env[: len(env) - len(new)] = env[len(new) :]  # in place: oldest out, newest last
            env[len(env) - len(new) :] = new
        # A new run of agent audio: the agent talks after NEW_RUN_FRAMES of silence, or in a new reply.
        # (An input chunk is at most 1 s, so the envelope still holds the silence before each frame.)
        env = self._far_env
        for i in range(len(env) - min(frames, len(env)), len(env)):
            if env[i] > ACTIVE_DBFS and (
                self._new_reply or not np.any(env[max(0, i - NEW_RUN_FRAMES) : i] > ACTIVE_DBFS)
            ):
                self._run_age, self._run_sure, self._new_reply = 0, False, False
            self._run_age += 1
        before = self._frames
        self._frames += frames
        if before // 10 == self._frames // 10:  # look every 100 ms
            return
        if not np.any(self._far_env[-NEW_RUN_FRAMES:] > ACTIVE_DBFS):
            self.echo_absent, self._absent_looks = False, 0  # the next reply may be heard otherwise
        talking = int(np.sum(self._far_env[-WINDOW_FRAMES:] > ACTIVE_DBFS))
        if talking < WINDOW_FRAMES // 4 or not np.any(self._far_env[-10:] > ACTIVE_DBFS):
            return  # the agent said too little lately to tell
        score, lag = _best_correlation(self._near_env, self._far_env)
        # Absent until the agent's next silence, or a look that could be an echo: once the user
        # talks over the agent the input is loud, which says nothing new about an echo.
        if score >= DETECT or self.echo_detected:
            self.echo_absent, self._absent_looks = False, 0
        elif not self.echo_absent:
            far = self._far_env[-ABSENT_FRAMES:]
            active = far > ACTIVE_DBFS
            quiet = bool(
                active.sum() >= ABSENT_FRAMES // 2
                and np.quantile(self._near_env[-ABSENT_FRAMES:], 0.9)
                < float(np.median(far[active])) - ABSENT_DB
            )
            self._absent_looks = self._absent_looks + 1 if quiet else 0
            self.echo_absent = self._absent_looks >= ABSENT_LOOKS
        # An echo keeps its delay; two voices that only happen to match do not, look after look.
        same_delay = abs(lag * 10 - self.echo_lag_ms) <= 20
        self._hits = self._hits + 1 if score >= DETECT and same_delay else int(score >= DETECT)
        self.echo_score = score
        if score >= DETECT:  # the echo's delay, as last seen clearly (double talk blurs the others)
            self.echo_lag_ms = lag * 10
            # ... and found again in this run once the run is longer than any delay searched
            self._run_sure = self._run_sure or self._run_age >= MAX_LAG_FRAMES
        if self._hits >= DETECT_LOOKS:
            if not self.echo_detected:
                log.debug("echo detected: %d ms after the reference, r=%.2f", self.echo_lag_ms, score)
            self.echo_detected, self._quiet_s = True, 0.0
        elif self.echo_detected and score < NO_ECHO:  # clearly nothing of the agent in the input
            self._quiet_s += 0.1
            if self._quiet_s >= FORGET_S:
                log.debug("no echo for %.0f s of agent speech: input passes unchanged", FORGET_S)
                self.echo_detected = False


def _dbfs(frames: npt.NDArray[np.int16]) -> npt.NDArray[np.float64]:
    power = np.mean(frames.astype(np.float64) ** 2, axis=1) / (32768.0**2)
    out: npt.NDArray[np.float64] = 10.0 * np.log10(power + 1e-10)
    return out


def _best_correlation(near: npt.NDArray[np.float64], far: npt.NDArray[np.float64]) -> tuple[float, int]:
    """The highest normalised correlation of the near envelope's last WINDOW_FRAMES with the far
    envelope delayed by 0..MAX_LAG_FRAMES frames (an echo comes after what it echoes), and its lag.
    Envelopes are floored at -70 dBFS, so digital silence does not weigh more than a quiet line."""
    y = np.maximum(near[-WINDOW_FRAMES:], -70.0)
    y = y - y.mean()
    ny = float(np.sqrt(np.sum(y * y)))
    if ny == 0.0:
        return 0.0, 0
    best, best_lag = 0.0, 0
    end = len(far)
    for lag in range(MAX_LAG_FRAMES + 1):
        x = np.maximum(far[end - lag - WINDOW_FRAMES : end - lag], -70.0)
        x = x - x.mean()
        nx = float(np.sqrt(np.sum(x * x)))
        if nx > 0.0 and (r := float(np.sum(x * y)) / (nx * ny)) > best:
            best, best_lag = r, lag
    return best, best_lag


def erle_db(echo: npt.NDArray[np.int16], residual: npt.NDArray[np.int16]) -> float:
    """Echo return loss enhancement: how much quieter the echo came out (power ratio, dB)."""
    e = float(np.mean(echo.astype(np.float64) ** 2)) + 1e-9
    r = float(np.mean(residual.astype(np.float64) ** 2)) + 1e-9
    return 10.0 * float(np.log10(e / r))
