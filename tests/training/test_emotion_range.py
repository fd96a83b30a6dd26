"""The emotion range fit on real audio files with known pitch ranges, written into a bundle."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from dubstudio.core.errors import ValidationError
from dubstudio.core.model import EMOTION_NAMES
from dubstudio.engine.small import build_modules, small_config
from dubstudio.training.corpus import Utterance
from dubstudio.training.emotion_range import (
    fit_emotion_range,
    log_spread,
    recorded_changes,
    training_lines,
    write_emotion_range,
)
from dubstudio.training.features import Item

#: Each style's pitch excursion as a multiple of calm's.
DEPTH = {"calm": 1.0, "happy": 1.5, "sad": 0.5}


def _tone(path: Path, centre: float, depth: float, seed: int) -> None:
    """A 1.5 s harmonic tone at 16 kHz whose pitch glides ``depth`` x 20 Hz around ``centre``."""
    rate = 16000
    t = np.arange(int(1.5 * rate)) / rate
    f0 = centre + 20.0 * depth * np.sin(2 * np.pi * (1.1 + 0.1 * seed) * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    audio = sum(np.sin(k * phase) / k for k in range(1, 10))
    sf.write(path, (0.2 * audio / np.abs(audio).max()).astype(np.float32), rate)


def _corpus(root: Path) -> list[Item]:
    """Flite's `kal16` (its engine sets the recipes' range) and RHVoice's `bdl` (it has no
    range control) read three training sentences in each style; `bdl`'s styles carry the
    range too here, so only the voice decides whether it is counted."""
    (root / "wavs").mkdir(parents=True)
    items = []
    for voice, centre in (("kal16", 110.0), ("bdl", 130.0)):
        for n, text in enumerate(("one", "two", "three")):
            for style, depth in DEPTH.items():
                uid = f"{voice}-{n}-{style}"
                _tone(root / "wavs" / f"{uid}.wav", centre, depth, n)
                utt = Utterance(
                    uid=uid, voice=voice, style=style, text=text, split="train",
                    wav=f"wavs/{uid}.wav", duration=1.5, phones=[],
                )  # fmt: skip
                gen = torch.Generator().manual_seed(len(items))
                items.append(
                    Item(utt, torch.randn(80, 120, generator=gen).half() - 4.0,
                         torch.zeros(120, dtype=torch.long), torch.zeros(70, dtype=torch.long),
                         torch.zeros(256))
                )  # fmt: skip
    return items


def test_log_spread_reads_the_pitch_excursion(tmp_path: Path) -> None:
    for depth in (0.5, 1.0, 2.0):
        _tone(tmp_path / "t.wav", 120.0, depth, 0)
        audio, rate = sf.read(str(tmp_path / "t.wav"), dtype="float32")
        spread = log_spread(audio, rate)
        assert spread is not None
        # p90 - p10 of log(120 + 20 d sin): about 2 x 0.95 x 20 d / 120.
        assert spread == pytest.approx(2 * 0.951 * 20 * depth / 120, rel=0.15)
    assert log_spread(np.zeros(16000, np.float32), 16000) is None


def test_recorded_changes_count_the_voices_that_carry_the_range(tmp_path: Path) -> None:
    items = _corpus(tmp_path)
    changes = recorded_changes(items, tmp_path)
    assert {items[i].utt.voice for i, _ in changes} == {"kal16"}
    for i, change in changes:
        expected = math.log(DEPTH[items[i].utt.style])
        assert change == pytest.approx(expected, abs=0.12)
    every = recorded_changes(items, tmp_path, range_for_every_engine=True)
    assert {items[i].utt.voice for i, _ in every} == {"kal16", "bdl"}
    assert len(recorded_changes(items, tmp_path, per_cell=2)) == 3 * 2  # 3 styles x 2


def test_fit_adds_what_the_renders_leave_out_and_goes_into_the_bundle(tmp_path: Path) -> None:
    from dubstudio.engine.bundles import load_bundle
    from dubstudio.engine.pipeline import Synthesizer
    from dubstudio.engine.small import create_tiny_small_bundle

    items = _corpus(tmp_path / "corpus")
    torch.manual_seed(0)
    t2s = build_modules(small_config("tiny"))["t2s"].eval()
    recorded = recorded_changes(items, tmp_path / "corpus")
    rendered = {"happy": [0.1, 0.3], "sad": [-0.2], "calm": [0.0, 0.0], "angry": [0.5]}
    fit = fit_emotion_range(t2s, items, recorded, rendered)
    happy, sad = EMOTION_NAMES.index("happy"), EMOTION_NAMES.index("sad")
    assert float(fit.rendered[happy]) == pytest.approx(0.2)
    assert float(fit.style_log[happy]) == pytest.approx(float(fit.recorded[happy]) - 0.2)
    assert float(fit.recorded[happy]) == pytest.approx(math.log(1.5), abs=0.08)
    assert float(fit.style_log[sad]) == pytest.approx(float(fit.recorded[sad]) + 0.2)
    # No recordings of angry, no renders of afraid, and calm: left as the decoder renders them.
    for name in ("angry", "afraid", "calm"):
        assert float(fit.style_log[EMOTION_NAMES.index(name)]) == 0.0
    assert fit.recordings == len(recorded) and fit.renders == 2
    assert fit.weight.shape == (t2s.config.model_dim,) and float(fit.weight.norm()) > 0

    root = create_tiny_small_bundle(tmp_path / "bundle")
    write_emotion_range(root, fit)
    synth = Synthesizer.from_bundle(load_bundle(root))  # the manifest's hashes still hold
    loaded = synth.components.emotion_range
    assert loaded is not None and torch.equal(loaded.per_style, fit.style_log)
    assert loaded.bias == pytest.approx(fit.bias)


def test_training_lines_use_each_voices_calm_recordings(tmp_path: Path) -> None:
    items = _corpus(tmp_path)
    lines = training_lines(items, tmp_path, per_voice=5)
    assert len(lines) == 2 * 2  # three calm readings per voice: one reference, two lines
    for ref, text, seconds in lines:
        assert ref.is_file() and "calm" in ref.name and seconds == 1.5
        assert text in ("one", "two", "three")
        assert ref.name.split("-")[1] != str(("one", "two", "three").index(text))
    with pytest.raises(ValidationError, match="two calm recordings"):
        training_lines([it for it in items if it.utt.style != "calm"], tmp_path)
