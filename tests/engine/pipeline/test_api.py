"""Request/result types: validation, content hashing and cache keys."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dubstudio.core.errors import RenderCancelled, ValidationError
from dubstudio.engine.api import (
    EmotionRequest,
    SynthesisRequest,
    VoiceRef,
    raise_if_stopped,
)


@pytest.fixture()
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "voice.wav"
    rng = np.random.default_rng(0)
    sf.write(path, (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    return path


def test_voice_hash_follows_content_not_path(clip: Path, tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere.wav"
    shutil.copy(clip, copy)
    assert VoiceRef.from_file(clip).content_hash == VoiceRef.from_file(copy).content_hash
    assert VoiceRef.from_file(clip).content_hash != VoiceRef.from_file(clip, 0.1).content_hash
    sf.write(copy, np.zeros(16000, np.float32), 16000)
    assert VoiceRef.from_file(clip).content_hash != VoiceRef.from_file(copy).content_hash


def test_missing_voice_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not found"):
        VoiceRef.from_file(tmp_path / "nope.wav")


def test_cache_key_covers_audio_fields_only(clip: Path) -> None:
    voice = VoiceRef.from_file(clip)
    base = SynthesisRequest("Hello there.", voice, target_samples=48000, seed=1)
    same = SynthesisRequest("Hello there.", voice, target_samples=48000, seed=1, request_id="x")
    assert base.cache_key("m") == same.cache_key("m")
    variants = [
        SynthesisRequest("Hello there!", voice, target_samples=48000, seed=1),
        SynthesisRequest("Hello there.", voice, target_samples=48001, seed=1),
        SynthesisRequest("Hello there.", voice, target_samples=48000, seed=2),
        SynthesisRequest("Hello there.", voice, target_samples=48000, seed=1, fit_dial=0.5),
        SynthesisRequest("Hello there.", voice, target_samples=48000, seed=1, cfm_steps=4),
        SynthesisRequest(
            "Hello there.",
            voice,
            target_samples=48000,
            seed=1,
            emotion=EmotionRequest("vector", (0.5, 0, 0, 0, 0, 0, 0, 0)),
        ),
    ]
    keys = {v.cache_key("m") for v in variants}
    assert len(keys) == len(variants)
    assert base.cache_key("m") not in keys
    assert base.cache_key("m") != base.cache_key("other-model")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"text": "  "},
        {"fit_dial": 1.5},
        {"duration_mode": "fast"},
        {"target_samples": 100, "lead_in_samples": 60, "lead_out_samples": 40},
        {"cfm_steps": 0},
    ],
)
def test_bad_requests_are_rejected(clip: Path, kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"text": "Hi.", "voice": VoiceRef.from_file(clip)} | kwargs
    with pytest.raises(ValidationError):
        SynthesisRequest(**args)  # type: ignore[arg-type]


def test_emotion_validation() -> None:
    with pytest.raises(ValidationError, match="8 values"):
        EmotionRequest("vector", (0.1, 0.2))
    with pytest.raises(ValidationError, match="clip"):
        EmotionRequest("audio")
    assert EmotionRequest("voice", alpha=0.3).identity() == EmotionRequest("voice").identity()


def test_raise_if_stopped() -> None:
    raise_if_stopped(None, "t2s")
    raise_if_stopped(lambda: False, "t2s")
    with pytest.raises(RenderCancelled, match="s2m"):
        raise_if_stopped(lambda: True, "s2m")
