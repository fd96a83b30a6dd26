"""Voice-profile analysis on real speech made by espeak-ng during the test."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dubstudio.engine.analysis import analyse_audio, analyse_voice, trim_silence

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")

SENTENCE = (
    "The quick brown fox jumps over the lazy dog, and then it runs back home "
    "across the wide green field before the sun goes down."
)


def espeak(path: Path, text: str, rate: int = 160) -> tuple[np.ndarray, int]:
    subprocess.run(["espeak-ng", "-s", str(rate), "-w", str(path), text], check=True)
    audio, sr = sf.read(path, dtype="float32")
    return audio, sr


def test_clean_speech_has_no_warnings_and_a_plausible_rate(tmp_path: Path) -> None:
    audio, sr = espeak(tmp_path / "a.wav", SENTENCE)
    result = analyse_voice(tmp_path / "a.wav")
    assert result.warnings == []
    assert result.duration_s == pytest.approx(len(audio) / sr)
    assert 0.6 * result.duration_s < result.speech_s <= result.duration_s
    assert -40 < result.loudness_dbfs < 0
    assert 2.0 < result.syllables_per_second < 8.0


def test_faster_reading_measures_a_higher_rate(tmp_path: Path) -> None:
    slow, sr = espeak(tmp_path / "slow.wav", SENTENCE, rate=110)
    fast, _ = espeak(tmp_path / "fast.wav", SENTENCE, rate=260)
    assert (
        analyse_audio(fast, sr).syllables_per_second
        > 1.3 * analyse_audio(slow, sr).syllables_per_second
    )


def test_problems_are_reported(tmp_path: Path) -> None:
    audio, sr = espeak(tmp_path / "a.wav", "Hello.")
    silence = np.zeros(sr * 4, np.float32)
    padded = np.concatenate([silence, audio, silence])
    warnings = " ".join(analyse_audio(padded, sr).warnings)
    assert "mostly silence" in warnings
    assert "too short" in " ".join(analyse_audio(audio, sr).warnings)
    long_audio, _ = espeak(tmp_path / "b.wav", SENTENCE)
    clipped = np.clip(long_audio * 30, -1, 1)
    assert any("clipped" in w for w in analyse_audio(clipped, sr).warnings)
    noise = np.random.default_rng(0).standard_normal(len(long_audio)).astype(np.float32)
    noisy = long_audio + 0.3 * float(np.abs(long_audio).max()) * noise
    assert any("noisy" in w for w in analyse_audio(noisy, sr).warnings)


def test_trim_silence_keeps_the_speech(tmp_path: Path) -> None:
    audio, sr = espeak(tmp_path / "a.wav", SENTENCE)
    silence = np.zeros(sr * 2, np.float32)
    trimmed, start, end = trim_silence(np.concatenate([silence, audio, silence]), sr)
    assert 1.5 < start < 2.3 < end
    assert len(trimmed) < len(audio) + sr
    assert np.abs(trimmed).max() == pytest.approx(np.abs(audio).max())
