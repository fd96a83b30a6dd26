"""Line -> SynthesisRequest mapping: budgets, fit modes, emotions, voices and seeds."""

from __future__ import annotations

from pathlib import Path

import pytest

from dubstudio.core.errors import ValidationError
from dubstudio.core.model import EmotionMode, EmotionSpec, FitMode, Project
from dubstudio.engine.api import VoiceRef
from dubstudio.services.requests import (
    RequestOptions,
    VoiceRefCache,
    derived_seed,
    request_for_line,
)


def test_fit_modes_map_to_duration_modes_and_margins(project: Project) -> None:
    line = project.lines[0]  # frames 5..25 at 25 fps, 22.05 kHz: 17640 samples
    exact = request_for_line(project, line, seed=1)
    assert (exact.target_samples, exact.duration_mode) == (17640, "exact")
    assert (exact.lead_in_samples, exact.lead_out_samples) == (0, 0)
    assert exact.text == "Hello there." and exact.sample_rate == 22050
    project.update_line(line.id, fit_mode=FitMode.EXACT_WITH_MARGINS, lead_in_s=0.1, lead_out_s=0.2)
    margins = request_for_line(project, line, seed=1)
    assert margins.target_samples == 17640
    assert (margins.lead_in_samples, margins.lead_out_samples) == (2205, 4410)
    project.update_line(line.id, fit_mode=FitMode.NATURAL)
    natural = request_for_line(project, line, seed=1)
    assert (natural.target_samples, natural.duration_mode) == (None, "free")


def test_markup_is_stripped_and_seed_kept(project: Project) -> None:
    request = request_for_line(project, project.lines[1], seed=7)
    assert request.text == "Who is it?" and request.seed == 7
    assert request.request_id == project.lines[1].id
    assert derived_seed("abc") == derived_seed("abc") != derived_seed("abd")


def test_emotion_modes(project: Project, tmp_path: Path, voice_wav: Path) -> None:
    line = project.lines[0]
    sliders = EmotionSpec.from_values(alpha=0.5, sad=0.8)
    project.update_line(line.id, emotion=sliders)
    emo = request_for_line(project, line, seed=0).emotion
    assert emo.mode == "vector" and emo.vector[2] == 0.8 and emo.alpha == 0.5
    project.update_line(
        line.id, emotion=EmotionSpec(mode=EmotionMode.REFERENCE_AUDIO, reference_path="voice.wav")
    )
    emo = request_for_line(project, line, seed=0).emotion
    assert emo.mode == "audio" and emo.audio is not None
    assert emo.audio.content_hash == VoiceRef.from_file(voice_wav).content_hash
    project.update_line(line.id, emotion=EmotionSpec(mode=EmotionMode.TEXT, description="sly"))
    assert request_for_line(project, line, seed=0).emotion.identity() == {
        "mode": "text",
        "description": "sly",
        "alpha": 1.0,
    }
    override = RequestOptions(emotion_override=EmotionSpec.from_values(happy=1.0))
    assert request_for_line(project, line, seed=0, options=override).emotion.vector[0] == 1.0


def test_voice_comes_from_character_then_default(project: Project, voice_wav: Path) -> None:
    line = project.lines[1]  # Bob -> voice2.wav
    refs = VoiceRefCache()
    bob = request_for_line(project, line, seed=0, refs=refs).voice
    ann = request_for_line(project, project.lines[0], seed=0, refs=refs).voice
    assert bob.content_hash != ann.content_hash
    project.update_line(line.id, character="Stranger")
    with pytest.raises(ValidationError, match="Stranger"):
        request_for_line(project, line, seed=0)
    default = VoiceRef.from_file(voice_wav)
    assert (
        request_for_line(project, line, seed=0, options=RequestOptions(default_voice=default)).voice
        == default
    )


def test_voice_hash_follows_the_file(tmp_path: Path, voice_wav: Path) -> None:
    refs = VoiceRefCache()
    first = refs.get(voice_wav)
    assert refs.get(voice_wav) is first  # hashed once
    voice_wav.write_bytes(voice_wav.read_bytes() + b"\0\0")
    assert refs.get(voice_wav).content_hash != first.content_hash
    with pytest.raises(ValidationError, match="not found"):
        refs.get(tmp_path / "missing.wav")
