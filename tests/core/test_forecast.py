"""Tests of the fit forecast: unit counting, thresholds, speaking-rate warnings."""

from __future__ import annotations

import pytest

from dubstudio.core.forecast import (
    DEFAULT_RATES,
    FitStatus,
    count_syllables,
    count_units,
    forecast_fit,
    forecast_line,
    natural_seconds,
)
from dubstudio.core.model import FitMode, Line, Project, VoiceProfile


@pytest.mark.parametrize(
    ("word", "syllables"),
    [("cat", 1), ("make", 1), ("table", 2), ("wishes", 2), ("makes", 1), ("doesn't", 2),
     ("don't", 1), ("flashlight", 2), ("careful", 2), ("attic", 2), ("the", 1)],
)  # fmt: skip
def test_syllable_heuristic(word: str, syllables: int) -> None:
    assert count_syllables(word) == syllables


def test_units_for_cjk_are_characters() -> None:
    assert count_units("你好世界", "zh") == (4, "characters")
    assert count_units("Hello there", "en") == (3, "syllables")
    assert count_units("", "en") == (0, "syllables")


def test_natural_time_uses_voice_rate_and_pauses() -> None:
    text = "One two three four five six seven."  # 8 syllables
    assert natural_seconds(text) == pytest.approx(8 / DEFAULT_RATES["en"])
    assert natural_seconds(text, rate=4.0) == pytest.approx(2.0)
    assert natural_seconds("One, two.", rate=2.0) == pytest.approx(1.0 + 0.12)


@pytest.mark.parametrize(
    ("budget", "status"),
    [(2.0, FitStatus.FITS), (2.2, FitStatus.FITS), (1.6, FitStatus.TIGHT),
     (2.45, FitStatus.TIGHT), (1.4, FitStatus.IMPOSSIBLE), (2.8, FitStatus.IMPOSSIBLE)],
)  # fmt: skip
def test_exact_mode_thresholds(budget: float, status: FitStatus) -> None:
    # 8 syllables at 4 syllables/s: natural 2.0 s.
    forecast = forecast_fit("One two three four five six seven.", budget, rate=4.0)
    assert forecast.natural_seconds == pytest.approx(2.0)
    assert forecast.status is status
    assert forecast.ratio == pytest.approx(budget / 2.0)


def test_natural_mode_only_fears_overrun() -> None:
    text = "One two three four five six seven."
    assert forecast_fit(text, 10.0, FitMode.NATURAL, rate=4.0).status is FitStatus.FITS
    assert forecast_fit(text, 2.1, FitMode.NATURAL, rate=4.0).status is FitStatus.TIGHT
    over = forecast_fit(text, 1.5, FitMode.NATURAL, rate=4.0)
    assert over.status is FitStatus.IMPOSSIBLE
    assert "overruns the slot by about 0.5 s" in over.message


def test_speaking_rate_warnings() -> None:
    text = "One two three four five six seven eight nine ten eleven twelve"  # 13 syllables
    fast = forecast_fit(text, 1.0)
    assert fast.warning is not None and "faster than people speak" in fast.warning
    slow = forecast_fit("Hi.", 3.0)
    assert slow.warning is not None and "unnaturally slow" in slow.warning
    assert forecast_fit("", 2.0).message.startswith("Nothing to say")


def test_forecast_line_uses_voice_profile_rate() -> None:
    project = Project(
        fps=25,
        lines=[Line("One two three four five six seven.", 0, 50, character="A")],
        voices=[VoiceProfile("v", "Slow talker", speaking_rate=2.0)],
        characters={"A": "v"},
    )
    line = project.lines[0]
    assert forecast_line(project, line).natural_seconds == pytest.approx(4.0)
    assert forecast_line(project, line).status is FitStatus.IMPOSSIBLE  # 2 s for 4 s of speech
