"""Echo gate: the agent must not interrupt itself by hearing its own voice come back.

On transports without the browser's echo cancellation (raw WebSocket PCM, telephony), what the agent
says can return in the input: a phone line's hybrid echo, a speakerphone, a client that loops its
playback. The server knows exactly what it sent and when, so it uses that as the far-end reference
with a Geigel-style double-talk detector (a classic of line-echo cancellers): input counts as the
user speaking only if its peak exceeds a threshold x the loudest reference sample sent within the
echo delay window before it. The threshold is learned: while the agent speaks, the gate tracks how
loud the input is relative to the reference (the echo return: ~0 for a client with its own echo
cancellation, 0.5 for a -6 dB echo) as the 90th percentile over the last ~2 s, and asks for
``margin`` times that (never less than ``floor``). The estimate rises at once but falls slowly
(half-life ``fall_half_life_s``), starting from ``prior`` (-6 dB): an echo that arrives late (a long
delay) must not find the gate already wide open. An echo cannot open the gate; a person talking over
the agent is louder than its echo.

Behind AEC3 (agent/aec.py) the gate sees the cleaned input: when the canceller starts cleaning, the
gate forgets what it learned from the raw echo and starts again from ``after_aec_prior`` (-12 dB: AEC3
takes 20-30 dB off a -6 dB echo), trusting speech it lets through as the user's (``trust_open``),
except in the first ``settle_s`` of each new run of agent audio, while a canceller may still be finding
the echo again. It learns the level of what AEC3 leaves of the echo only from windows of echo alone
(the canceller tells it which hold more), and holds a window the canceller passed uncancelled (the
user over the echo) to the raw echo's level.

Limits, on purpose: it gates speech *onset* (barge-in and turn starts) while agent audio is echoing;
it does not subtract the echo from the audio given to ASR; a user who speaks much more quietly than
the agent's echo cannot interrupt (lower ``ratio``, or rely on the client's own AEC).

Positions are input-stream samples at 16 kHz: a reference block is stamped with the input position
at the moment it was sent, and the window ``max_delay_s`` covers the playout lead, the network both
ways and the echo path (50-150 ms in the tests, up to ~300 ms on phone lines).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

RATE = 16_000
BLOCK = 160  # reference peaks are kept per 10 ms block


@dataclass(frozen=True, slots=True)
class EchoGatePolicy:
    margin: float = 1.4  # input must be this much louder (x, ~+3 dB) than the echo return so far
    prior: float = 0.5  # echo return assumed before it is measured (-6 dB)
    floor: float = 0.08  # the threshold never drops below this x the reference (-22 dB)
    max_delay_s: float = 0.45  # echo arrives at most this long after the reference was sent
    history_s: float = 4.0
    learn_windows: int = 60  # echo-return measurements kept (~2 s of 32 ms windows)
    fall_half_life_s: float = 1.0  # how slowly the learned echo return may fall
    after_aec_prior: float = 0.25  # echo return assumed once AEC3 cleans the input (-12 dB)
    # The agent starts talking again after a silence this long: a new run of far-end audio. For
    # ``settle_s`` after that, and after a restart, the gate trusts nothing it lets through (a
    # canceller may need that long to find the echo again if its delay moved, and AEC3 leaves an
    # echo only 8-10 dB down for the first few hundred ms after it is found).
    new_run_gap_s: float = 1.5  # (longer than a pause for speech over the agent, ~0.3-1.2 s)
    settle_s: float = 0.6
    hangover_s: float = 0.1  # trusted: speech right after an open window keeps it open this long
    hangover_after: int = 2  # ... behind our canceller, once this many windows in a row were loud
    # enough (one can be a burst of what AEC3 left of the echo; a syllable of the user's is 3-6)
    # After a restart the learned echo return does not fall under the prior for this long: just after
    # AEC3 finds an echo, what it leaves comes in speech-like bursts, too few windows for the 90th
    # percentile to count, and the gate would open for them (measured: a -6 dB echo 0.64 s after
    # detection left bursts 10 dB under the reference, read as speech by the VAD at 0.9).
    restart_hold_s: float = 1.5
    echo_quantile: float = 0.9  # the echo return learned: this quantile of the measurements
    residual_quantile: float = 0.98  # ... and that of what is left behind our canceller


class EchoGate:
    def __init__(self, policy: EchoGatePolicy | None = None) -> None:
        self.policy = policy or EchoGatePolicy()
        self._blocks = int(self.policy.history_s * RATE) // BLOCK
        self._peaks = np.zeros(self._blocks, np.float32)
        self._stamp = np.full(self._blocks, -1, np.int64)  # which absolute block each slot holds
        self.blocked = 0  # onset windows the gate refused (counted for /metrics and tests)
        self._returns: deque[float] = deque(maxlen=self.policy.learn_windows)
        self.echo_return = self.policy.prior  # the input's loudness relative to the reference (learned)
        # Whether speech the gate lets through is taken to be the user's. While the gate is the
        # only line against the echo it is not: it learns from every window, so an echo louder
        # than expected closes the gate within a window. Behind an echo canceller (or a client
        # that cancels its own echo) what comes through loud is the user, and learning *their*
        # loudness as the echo's would shut them out after ~0.2 s of talking over the agent.
        self.trust_open = False
        self._last_active = -(1 << 40)  # input position of the latest reference with sound in it
        self._run_start = 0  # ... where the latest run of agent audio began
        self._open_until = 0  # input position up to which the hangover holds the gate open
        self._position = 0  # the end of the latest window judged
        self._loud = 0  # windows in a row loud enough to pass on their own
        self._behind_aec = False  # restarted onto a canceller's output (not a client's own AEC)
        self._restarted_at = -(1 << 40)  # ... at the latest restart (none yet)

    @property
    def threshold(self) -> float:
        return min(1.0, max(self.policy.floor, self.policy.margin * self.echo_return))

    def reference(self, peak: float, at: int, samples: int) -> None:
        """The agent sent audio with this peak (0..1) covering ``samples`` input samples from ``at``."""
        if peak > 1e-3:
            if at - self._last_active > self.policy.new_run_gap_s * RATE:
                self._run_start = at
            self._last_active = at + samples
        first, last = at // BLOCK, (at + max(samples, 1) - 1) // BLOCK
        for b in range(first, last + 1):
            slot = b % self._blocks
            if self._stamp[slot] != b:
                self._stamp[slot], self._peaks[slot] = b, 0.0
            self._peaks[slot] = max(self._peaks[slot], peak)

    def reference_peak(self, start: int, end: int) -> float:
        """The loudest reference that could be echoing in the input window [start, end)."""
        lo = (start - int(self.policy.max_delay_s * RATE)) // BLOCK
        hi = end // BLOCK
        blocks = np.arange(lo, hi + 1)
        slots = blocks % self._blocks
        valid = self._stamp[slots] == blocks
        return float(self._peaks[slots][valid].max()) if valid.any() else 0.0

    def allows(
        self,
        window: npt.NDArray[np.int16],
        start: int,
        end: int,
        speech: bool = False,
        near_end: bool = False,
        raw_return: float = 0.0,
        echo_absent: bool = False,
    ) -> bool:
        """May this input window start speech? False when it is no louder than echo could be.
        Call it for every window while the agent may be echoing: each call also learns, except,
        once ``trust_open`` is set, from a window it lets through that the VAD calls ``speech`` and
        from one the canceller says holds more than echo (``near_end``) or passed uncancelled
        (``raw_return``: then the echo in it is that loud, relative to the reference, whatever
        is left of it elsewhere; 0 where the window was cancelled). Where the canceller found no
        echo in this run of agent speech (``echo_absent``) every window passes and none is
        learned: it is the user (or silence), not the echo."""
        self._position = end
        if echo_absent:
            self._loud = 0
            return True
        reference = self.reference_peak(start, end)
        if reference <= 0.0:
            return True
        peak = float(np.abs(window.astype(np.int32)).max(initial=0)) / 32768.0
        ratio = peak / reference
        allowed = ratio > max(self.threshold, self.policy.margin * raw_return)
        settled = max(self._run_start, self._restarted_at) + self.policy.settle_s * RATE
        trusted = self.trust_open and start >= settled
        self._loud = self._loud + 1 if allowed else 0
        if self._loud >= (self.policy.hangover_after if self._behind_aec else 1):
            self._open_until = end + int(self.policy.hangover_s * RATE)
        elif trusted and speech and start < self._open_until:
            allowed = True  # a dip between the user's words, not the end of their speech
        skip = (allowed and speech and trusted) or (self.trust_open and (near_end or raw_return > 0.0))
        if not skip:
            self._learn(ratio, (end - start) / RATE)
        if not allowed:
            self.blocked += 1
        return allowed

    def restart(self, prior: float, *, trust_open: bool) -> None:
        """Forget what was learned: the input changed (an echo canceller started or stopped
        cleaning it)."""
        self._returns.clear()
        self.echo_return = prior
        self.trust_open = trust_open
        self._restarted_at = self._position
        self._behind_aec = trust_open  # the input is now what a canceller left: its bursts count

    def _learn(self, ratio: float, seconds: float) -> None:
        self._returns.append(ratio)
        # Alone, the echo is most windows and the 90th percentile is its level; behind a canceller,
        # what is left comes in rare bursts (AEC3 re-adapting), and the loudest of them counts.
        q = self.policy.residual_quantile if self._behind_aec else self.policy.echo_quantile
        measured = float(np.quantile(np.asarray(self._returns), q))
        if self._position < self._restarted_at + self.policy.restart_hold_s * RATE:
            decayed = self.echo_return  # just restarted: the estimate may rise, not fall yet
        else:
            decayed = self.echo_return * 0.5 ** (seconds / self.policy.fall_half_life_s)
        self.echo_return = max(measured, decayed)
