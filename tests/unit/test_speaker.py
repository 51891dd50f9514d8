"""Speaker-embedding arithmetic that needs no model: where the 1.6 s windows fall, pause cutting."""

from __future__ import annotations

import numpy as np

from agent.voices.embedding import HOP, PARTIAL_FRAMES, RATE, cosine, keep_speech, partial_starts


def test_short_audio_still_gets_one_window() -> None:
    assert partial_starts(RATE // 2) == [0]


def test_windows_cover_the_audio_and_drop_a_barely_started_last_one() -> None:
    n = 5 * RATE
    starts = partial_starts(n)
    step = starts[1] - starts[0]
    assert step == round(RATE / 1.3 / HOP)
    assert all(b - a == step for a, b in zip(starts, starts[1:], strict=False))
    last_end = (starts[-1] + PARTIAL_FRAMES) * HOP
    covered = (n - starts[-1] * HOP) / (PARTIAL_FRAMES * HOP)
    assert covered >= 0.75
    assert last_end >= n - step * HOP  # nothing long is left out at the end


def test_silence_is_cut_entirely() -> None:
    assert len(keep_speech(np.zeros(RATE * 2, np.float32))) == 0


def test_cosine_of_opposites_and_equals() -> None:
    a = np.array([1.0, 0.0], np.float32)
    assert cosine(a, a) == 1.0
    assert cosine(a, -a) == -1.0
