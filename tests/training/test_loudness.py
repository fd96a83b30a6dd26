"""The emotion loudness fit on a small set of real feature items with known level changes."""

from __future__ import annotations

import math

import pytest
import torch

from dubstudio.core.model import EMOTION_NAMES
from dubstudio.engine.audio import mel_level_db
from dubstudio.engine.small import build_modules, small_config
from dubstudio.training.corpus import Utterance
from dubstudio.training.features import Item
from dubstudio.training.recipes import fit_emotion_loudness, loudness_changes

CHANGES = {"calm": 0.0, "happy": 3.0, "sad": -5.0}


def _items() -> list[Item]:
    """Two voices read three sentences (the third held out) calmly, happily (+3 dB) and sadly
    (-5 dB), plus one happy reading without a calm one to compare with."""
    gen = torch.Generator().manual_seed(0)
    items = []
    for voice in ("a", "b"):
        for n, text in enumerate(("one", "two", "three", "four")):
            base = torch.randn(80, 120, generator=gen) - 4.0
            styles = ("happy",) if text == "four" else tuple(CHANGES)
            for style in styles:
                shade = 0.05 * torch.randn(80, 120, generator=gen)  # each reading differs
                utt = Utterance(
                    uid=f"{voice}-{n}-{style}", voice=voice, style=style, text=text,
                    split="test" if text == "three" else "train", wav="", duration=1.4, phones=[],
                )  # fmt: skip
                mel = base + shade + CHANGES[style] * math.log(10.0) / 20.0
                items.append(
                    Item(utt, mel.half(), torch.zeros(120, dtype=torch.long),
                         torch.zeros(70, dtype=torch.long), torch.zeros(256))
                )  # fmt: skip
    return items


def test_changes_are_against_the_same_voice_reading_the_same_sentence_calmly() -> None:
    items = _items()
    changes = loudness_changes(items)
    for it, change in zip(items, changes, strict=True):
        if it.utt.text == "four":
            assert change is None
            continue
        calm = next(
            c for c in items
            if (c.utt.voice, c.utt.text, c.utt.style) == (it.utt.voice, it.utt.text, "calm")
        )  # fmt: skip
        assert change == pytest.approx(
            mel_level_db(it.mel.float()) - mel_level_db(calm.mel.float())
        )
        assert change == pytest.approx(CHANGES[it.utt.style], abs=0.3)  # plus the reading's own


def test_fit_gives_each_style_its_mean_change_and_reads_held_out_clips() -> None:
    torch.manual_seed(0)
    t2s = build_modules(small_config("tiny"))["t2s"].eval()
    items = _items()
    changes = loudness_changes(items)
    fit = fit_emotion_loudness(t2s, items)
    for k, style in enumerate(EMOTION_NAMES):
        own = [c for it, c in zip(items, changes, strict=True)
               if it.utt.style == style and it.utt.split == "train" and c is not None]  # fmt: skip
        expected = sum(own) / len(own) if own else 0.0  # type: ignore[arg-type]
        assert float(fit.style_db[k]) == pytest.approx(expected, abs=1e-5)
    assert float(fit.style_db[EMOTION_NAMES.index("happy")]) == pytest.approx(3.0, abs=0.5)
    # Read-out: the 8 paired non-calm training readings and 4 calm ones (8 // 2 styles).
    assert fit.samples == 12
    assert fit.weight.shape == (t2s.config.model_dim,) and float(fit.weight.norm()) > 0
    assert set(fit.held_out) == {"happy", "sad", "calm"}
    n, measured, _ = fit.held_out["sad"]
    assert n == 2 and measured == pytest.approx(-5.0, abs=0.5)
    assert math.isfinite(fit.mae_db)
    # Only calm readings: nothing to fit, a zero read-out.
    calm_only = [it for it in items if it.utt.style == "calm"]
    empty = fit_emotion_loudness(t2s, calm_only)
    assert float(empty.weight.abs().sum()) == 0.0 and empty.bias == 0.0
    assert float(empty.style_db.abs().sum()) == 0.0
