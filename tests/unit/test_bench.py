"""The bench's pure parts: corpus rendering, percentiles, flags passed to the server it starts."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from agent.config import Settings
from streaming.devtools.bench import (
    AUDIBLE,
    CORPUS,
    HESITATION,
    Utterance,
    _barge_in_modes,
    main,
    percentiles,
    render,
    server_flags,
)


class ToneTts:
    """0.5 s of tone per word, with 0.2 s of silence before and after (like a real TTS's padding)."""

    name = "tone"
    sample_rate = 16000

    def synthesize(self, text: str) -> np.ndarray:
        n = len(text.split()) * 8000
        tone = (np.sin(np.arange(n) * 0.3) * 0.5).astype(np.float32)
        pad = np.zeros(3200, np.float32)
        return np.concatenate([pad, tone, pad])


def test_inner_pauses_are_the_exact_gap_between_speech_and_the_end_is_speech() -> None:
    pcm = render(ToneTts(), Utterance(("one two", "three"), (0.4,)))
    loud = np.abs(pcm.astype(np.int32)) > AUDIBLE
    assert loud[-1]
    gaps = np.diff(np.nonzero(loud)[0])
    assert abs(gaps.max() - 0.4 * 16000) <= 2


def test_the_corpus_has_inner_pauses_of_300_to_600_ms() -> None:
    pauses = [p for u in CORPUS for p in u.pauses_s]
    assert pauses and min(pauses) >= 0.3 and max(pauses) <= 0.6
    assert all(len(u.pauses_s) == len(u.parts) - 1 for u in CORPUS)


def test_the_hesitation_corpus_pauses_600_to_1000_ms_where_a_turn_must_not_end() -> None:
    pauses = [p for u in HESITATION for p in u.pauses_s]
    assert len(pauses) == len(HESITATION) and min(pauses) >= 0.6 and max(pauses) <= 1.0
    firsts = [u.parts[0] for u in HESITATION]
    assert sum(f.split()[-1] in ("and", "because", "with", "at", "so") for f in firsts) >= 5
    assert sum(f.endswith(".") for f in firsts) >= 3  # a finished short sentence, then more


def test_barge_in_modes_are_read_from_a_comma_list_and_unknown_ones_refused_before_a_server_starts() -> None:
    assert _barge_in_modes(" echo, echo+interrupt ") == ("echo", "echo+interrupt")
    for bad in ("", "echo,shout", " , "):
        with pytest.raises(SystemExit, match="--barge-in-modes"):
            _barge_in_modes(bad)
    # main() refuses them before it starts a server (no --url: it would start one).
    args = argparse.Namespace(barge_in=True, barge_in_modes="shout", url=None)
    with pytest.raises(SystemExit, match="--barge-in-modes"):
        main(args, Settings())


def test_percentiles() -> None:
    p = percentiles([float(x) for x in range(1, 101)])
    assert p["p50"] == 50.5 and p["max"] == 100 and 95 < p["p95"] < 96.1 and p["n"] == 100
    assert percentiles([]) == {}


def test_settings_flags_given_to_bench_go_to_the_server_it_starts() -> None:
    args = argparse.Namespace(**{f: None for f in Settings.__dataclass_fields__})
    args.speculative_reply = False
    args.endpoint_complete_s = 0.4
    args.port = 9999  # never forwarded: bench picks the server's port
    assert server_flags(args) == ["--endpoint-complete-s", "0.4", "--speculative-reply", "false"]


def test_a_stall_is_where_playback_runs_dry_before_the_next_chunk_arrives() -> None:
    from streaming.devtools.client import playback_stalls

    paced = [(i * 0.02, 0.02) for i in range(50)]  # real-time 20 ms frames: never dry
    assert playback_stalls(paced) == []
    burst = [(0.0, 1.0), (0.5, 0.5), (1.2, 0.3)]  # a second early, then 0.5 s more: plays to 1.5 s
    assert playback_stalls(burst) == []
    late = [(0.0, 0.5), (0.52, 0.02), (0.9, 0.5)]  # dry 20 ms (not heard), then 360 ms (heard)
    assert [round(g, 3) for g in playback_stalls(late)] == [0.36]
