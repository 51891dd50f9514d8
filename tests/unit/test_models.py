"""Part joining and verification, on small fake model packages made in a temp dir."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from agent import models
from agent.errors import ModelError


@pytest.fixture
def fake_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    for i, data in enumerate([b"first-part|", b"second-part"], start=1):
        pkg = site / f"fakepart{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("raise RuntimeError('model packages must not be imported')\n")
        (pkg / "data" / "part.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("VOXLOOP_HOME", str(tmp_path / "home"))
    yield site
    for name in ("fakepart1", "fakepart2"):
        sys.modules.pop(name, None)


def model(sha: str, size: int = 22) -> models.EmbeddedModel:
    return models.EmbeddedModel(
        name="fake",
        role="llm",
        description="",
        licence="",
        parts=tuple(models.Part(f"fake-part{i}", f"fakepart{i}", "data/part.bin") for i in (1, 2)),
        joined_name="fake.bin",
        size_bytes=size,
        sha256=sha,
    )


def test_parts_are_joined_in_order_and_verified(fake_packages: Path) -> None:
    sha = hashlib.sha256(b"first-part|second-part").hexdigest()
    path = models.prepare(model(sha))
    assert path.read_bytes() == b"first-part|second-part"
    assert models.prepare(model(sha)) == path  # second call: stamp hit, no re-join
    assert models.verify(model(sha)) == path


def test_a_wrong_hash_is_refused_and_leaves_nothing_behind(fake_packages: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError) as info:
        models.prepare(model("0" * 64))
    assert info.value.code == "model_corrupt"
    assert not any((tmp_path / "home").glob("fake.bin*"))


def test_a_missing_package_is_named(fake_packages: Path) -> None:
    broken = models.EmbeddedModel(
        name="x", role="llm", description="", licence="",
        parts=(models.Part("no-such-model-package", "no_such_model_package", "a.bin"),),
        joined_name="x.bin", size_bytes=1, sha256="0" * 64,
    )  # fmt: skip
    with pytest.raises(ModelError) as info:
        models.prepare(broken)
    assert info.value.code == "model_package_missing"
    assert "pip install no-such-model-package" in info.value.message


def test_aliases_resolve_to_the_catalogue() -> None:
    resolved = models.resolve_name("tiny.en")
    assert resolved is not None and resolved.name == "whisper-tiny.en"
    assert models.resolve_name("/some/model.gguf") is None
    assert {m.role for m in models.CATALOGUE.values()} == {"asr", "llm", "tts", "vad", "eot", "speaker"}
