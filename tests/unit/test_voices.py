"""The speaker library's records and a derived voice's shape: pure, no models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent.errors import ModelError
from agent.voices.library import BUILTIN, Voice, VoiceError, VoiceLibrary
from agent.voices.shape import BIN_HZ, Shape, reshape_f0, tilt_curve, warp_bins


def _voice(voice_id: str = "anna") -> Voice:
    return Voice(
        voice_id,
        "Anna",
        "hibari",
        "hibari-heart",
        {"f0_scale": 0.9, "warp": 0.95},
        licence="Apache-2.0",
        reference={"duration_s": 42.0, "similarity": 0.81},
    )


def _embedding(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(256).astype(np.float32)


def test_an_added_voice_round_trips_through_its_files(tmp_path: Path) -> None:
    library = VoiceLibrary(tmp_path)
    added = library.add(_voice(), _embedding())
    assert added.created_at is not None and not added.builtin
    assert (tmp_path / "anna.json").exists() and (tmp_path / "anna.npy").exists()
    fresh = VoiceLibrary(tmp_path)  # another process, or a restart
    again = fresh.get("anna")
    assert again == added
    emb = fresh.embedding("anna")
    assert emb is not None and emb.shape == (256,)
    assert abs(float(np.linalg.norm(emb)) - 1.0) < 1e-5  # stored L2-normalised
    assert np.allclose(emb, _embedding() / np.linalg.norm(_embedding()), atol=1e-6)


def test_a_voice_added_elsewhere_is_seen_without_a_restart(tmp_path: Path) -> None:
    serving = VoiceLibrary(tmp_path)
    assert "anna" not in serving
    VoiceLibrary(tmp_path).add(_voice(), _embedding())  # e.g. `voxloop voices enrol` beside the server
    assert serving.get("anna").name == "Anna"
    VoiceLibrary(tmp_path).remove("anna")
    assert "anna" not in serving


def test_builtins_come_first_and_the_rest_in_id_order(tmp_path: Path) -> None:
    library = VoiceLibrary(tmp_path)
    library.add(_voice("zed"), _embedding(1))
    library.add(_voice("bea"), _embedding(2))
    assert library.ids() == (*(v.id for v in BUILTIN), "bea", "zed")


def test_unknown_existing_builtin_and_malformed_ids_are_refused(tmp_path: Path) -> None:
    library = VoiceLibrary(tmp_path)
    with pytest.raises(VoiceError) as unknown:
        library.get("nobody")
    assert unknown.value.code == "bad_voice" and unknown.value.status == 404
    assert "heart" in unknown.value.message  # names the known ones
    library.add(_voice(), _embedding())
    with pytest.raises(VoiceError) as taken:
        library.add(_voice(), _embedding())
    assert (taken.value.code, taken.value.status) == ("voice_exists", 409)
    with pytest.raises(VoiceError) as builtin:
        library.add(_voice("heart"), _embedding())
    assert builtin.value.status == 409
    with pytest.raises(VoiceError) as kept:
        library.remove("heart")
    assert kept.value.code == "voice_builtin"
    for bad in ("", "Anna", "../x", "a" * 41, "-x"):
        with pytest.raises(VoiceError) as malformed:
            library.add(_voice(bad), _embedding())
        assert malformed.value.code == "bad_voice_id"


def test_openai_voice_names_speak_in_a_builtin_voice_unless_enrolled_under_that_id(tmp_path: Path) -> None:
    library = VoiceLibrary(tmp_path)
    assert library.get("alloy").id == "heart" and library.get("onyx").id == "basalt"
    assert "alloy" not in library.ids()  # listed once, under its own id
    library.add(_voice("onyx"), _embedding())
    assert library.get("onyx").name == "Anna"


def test_an_unreadable_record_is_skipped_and_the_rest_load(tmp_path: Path) -> None:
    VoiceLibrary(tmp_path).add(_voice(), _embedding())
    (tmp_path / "broken.json").write_text("{not json")
    record = json.loads((tmp_path / "anna.json").read_text())
    (tmp_path / "other.json").write_text(json.dumps({**record, "id": "someone-else"}))  # name mismatch
    assert VoiceLibrary(tmp_path).ids()[-1] == "anna"


def test_a_builtin_embedding_is_kept_once_computed(tmp_path: Path) -> None:
    library = VoiceLibrary(tmp_path)
    assert library.embedding("ember") is None
    kept = library.keep_embedding("ember", _embedding(3) * 5.0)
    again = VoiceLibrary(tmp_path).embedding("ember")
    assert again is not None and np.allclose(kept, again)
    assert abs(float(np.linalg.norm(again)) - 1.0) < 1e-5
    assert VoiceLibrary(tmp_path).embedding("pip") is None


def test_shape_params_round_trip_and_are_checked() -> None:
    shape = Shape.of({"f0_scale": 0.8, "warp": 0.92})
    assert Shape.of(shape.params()) == shape
    assert shape.params() == {"f0_scale": 0.8, "warp": 0.92}
    assert Shape().neutral and not shape.neutral
    with pytest.raises(ModelError, match="outside"):
        Shape.of({"warp": 3.0})
    with pytest.raises(ModelError, match="unknown hibari voice parameters"):
        Shape.of({"formant": 1.0})
    for voice in BUILTIN:
        Shape.of(voice.params)


def test_warp_moves_a_spectral_peak_by_its_factor() -> None:
    env = np.full((601, 3), -5.0, np.float32)
    env[50] = 0.0  # 1 kHz
    assert int(np.argmax(warp_bins(env, 0.8)[:, 0])) == 40  # down to 800 Hz
    assert int(np.argmax(warp_bins(env, 1.2)[:, 0])) == 60
    assert np.array_equal(warp_bins(env, 1.0), env)


def test_tilt_is_zero_at_1khz_and_its_slope_per_octave() -> None:
    curve = tilt_curve(3.0)
    to_db = 20.0 / np.log(10.0)
    assert abs(curve[int(1000 / BIN_HZ)]) < 1e-6
    assert abs(curve[int(2000 / BIN_HZ)] * to_db - 3.0) < 1e-4
    assert abs(curve[int(500 / BIN_HZ)] * to_db + 3.0) < 1e-4


def test_f0_scale_and_range_leave_unvoiced_frames_alone() -> None:
    f0 = np.array([0.0, 180.0, 220.0, 200.0, 0.0], np.float32)
    scaled = reshape_f0(f0, 0.5, 1.0)
    assert scaled[0] == 0.0 and scaled[-1] == 0.0
    assert np.allclose(scaled[1:4], f0[1:4] * 0.5, rtol=1e-5)
    flat = reshape_f0(f0, 1.0, 0.0)
    assert np.allclose(flat[1:4], flat[1])  # no movement left: the (geometric) mean
    wide = reshape_f0(f0, 1.0, 2.0)
    assert wide[2] - wide[1] > f0[2] - f0[1]
