"""Evaluation measures of the small model: F0 statistics, token-sequence agreement, the report
table and the model-card section it is written into."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dubstudio.core.model import EMOTION_NAMES
from dubstudio.engine.small import collapse_repeats, edit_distance
from dubstudio.training.evaluate import (
    EvalResults,
    direction_agreement,
    format_table,
    prosody,
    write_card,
)


def test_prosody_follows_a_pitch_glide() -> None:
    rate = 16000
    t = np.arange(rate) / rate
    # 100 -> 200 Hz linear glide: median 150 Hz, p90 - p10 about 80 Hz.
    glide = (0.3 * np.sin(2 * np.pi * (100 * t + 50 * t**2))).astype(np.float32)
    median, spread, _ = prosody(glide, rate)
    assert median == pytest.approx(150, rel=0.05)
    assert spread == pytest.approx(80, rel=0.1)
    noise = np.random.default_rng(0).normal(0, 0.3, rate).astype(np.float32)
    assert np.isnan(prosody(noise, rate)[0])  # white noise: no voiced frame


@pytest.mark.skipif(shutil.which("flite") is None, reason="needs Debian flite")
def test_prosody_reads_a_real_voice_without_octave_jumps(tmp_path: Path) -> None:
    # A calm reading's F0 spans a few semitones; octave errors (a frame read at half or twice
    # the pitch) would put p90 - p10 near the median itself.
    for i, text in enumerate(
        (
            "The old sailor found a letter in the sand.",
            "Please bring the green cups to the kitchen before noon.",
        )
    ):
        wav = tmp_path / f"{i}.wav"
        subprocess.run(["flite", "-voice", "slt", "-t", text, "-o", str(wav)], check=True)
        audio, rate = sf.read(str(wav), dtype="float32")
        median, spread, _ = prosody(audio, rate)
        assert 150 < median < 210
        assert spread < 0.3 * median


def test_prosody_range_grows_with_pitch_spread() -> None:
    rate = 16000
    t = np.arange(2 * rate) / rate
    flat = np.sin(2 * np.pi * 150 * t)
    wobble = np.sin(2 * np.pi * (150 * t + 40 / (2 * np.pi * 2) * -np.cos(2 * np.pi * 2 * t)))
    _, r_flat, _ = prosody((0.3 * flat).astype(np.float32), rate)
    _, r_wob, _ = prosody((0.3 * wobble).astype(np.float32), rate)
    assert r_flat < 5 and r_wob > 40


def test_collapse_and_edit_distance() -> None:
    assert collapse_repeats([3, 3, 1, 1, 1, 3, 2, 2]) == [3, 1, 3, 2]
    assert collapse_repeats([]) == []
    assert edit_distance([1, 2, 3], [1, 2, 3]) == 0
    assert edit_distance([1, 2, 3], [1, 3]) == 1
    assert edit_distance([1, 2, 3], [4, 5]) == 3
    assert edit_distance([], [7, 7]) == 2


def _results() -> EvalResults:
    res = EvalResults(rows=[("WER model (pocketsphinx)", "0.300")])
    res.emotion_rows = [(n, 1.5 * i, -2.0, 0.5, 1.1) for i, n in enumerate(EMOTION_NAMES)]
    return res


def test_format_table_lists_every_measure_and_emotion() -> None:
    table = format_table(_results())
    assert "| WER model (pocketsphinx) | 0.300 |" in table
    for name in EMOTION_NAMES:
        assert f"| {name} (" in table
    assert "| +3.0 | -2.0 | +0.5 | ×1.10 |" in table  # the third emotion's row


def test_direction_agreement_counts_signs_against_each_recipe() -> None:
    # sad: pitch x0.88, range x0.5, -6 dB, rate x0.8 -> every change should be negative.
    assert direction_agreement([("sad", -5.0, -3.0, -2.0, 0.9)]) == (4, 4)
    assert direction_agreement([("sad", 5.0, -3.0, 0.0, 1.1)]) == (1, 4)
    # calm has no direction; nothing is counted for it.
    assert direction_agreement([("calm", 1.0, 1.0, 1.0, 1.0)]) == (0, 0)
    table = format_table(
        EvalResults(emotion_rows=[("sad", -5.0, -3.0, -2.0, 0.9), ("happy", 1.0, 1.0, 1.0, 1.0)])
    )
    # happy: pitch, range and energy up agree; an unchanged rate does not.
    assert "Measures moving in their recipe's direction: 7/8." in table


def test_direction_agreement_against_the_recordings_changes() -> None:
    model = [("disgusted", -5.0, -3.0, -2.0, 0.9), ("calm", 0.0, 0.0, 0.0, 1.0)]
    # The recipe widens disgusted's range and adds 1 dB; these recordings narrow and soften it.
    recorded = [("disgusted", -15.0, -17.6, -0.3, 0.88), ("calm", 0.0, 0.0, 0.0, 1.0)]
    assert direction_agreement(model) == (2, 4)
    assert direction_agreement(model, recorded) == (4, 4)
    assert direction_agreement(model, [("disgusted", 1.0, 0.0, -1.0, 1.2)]) == (1, 3)
    table = format_table(EvalResults(emotion_rows=model, source_emotion_rows=recorded))
    assert "| -5.0 (-15.0) | -3.0 (-17.6) | -2.0 (-0.3) | ×0.90 (×0.88) |" in table
    assert "recipe's direction: 2/4." in table and "those recordings move: 4/4." in table


def test_write_card_replaces_only_the_eval_section(tmp_path: Path) -> None:
    from dubstudio.engine.small import create_tiny_small_bundle

    root = create_tiny_small_bundle(tmp_path / "b")
    (root / "MODEL_CARD.md").write_text(
        "# Card\nintro\n<!-- eval:begin -->\nold\n<!-- eval:end -->\nfooter\n", encoding="utf-8"
    )
    write_card(root, "first table")
    card = write_card(root, "second table")
    text = card.read_text(encoding="utf-8")
    assert text.startswith("# Card\nintro\n") and text.endswith("footer\n")
    assert "second table" in text and "first table" not in text and "old" not in text
    assert text.count("<!-- eval:begin -->") == 1
