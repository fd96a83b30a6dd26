"""Fit forecast: will a line's text fit its budget before anything is rendered?

The forecast estimates how long the text takes at a natural speaking rate and compares it with
the line's speech budget.

Natural duration. Text is counted in *units*: syllables for languages written with an alphabet
(a vowel-group heuristic, good to about +-15 % on English sentences), characters for Chinese and
Japanese, where a character is roughly a syllable or a mora. The units are divided by a speaking
rate -- the voice profile's measured rate when it has one, else the language default below
(acted dialogue as TTS voices deliver it: about 70 % of the read-speech rates measured by
Pellegrino et al. 2011, e.g. English 6.2 -> 4.2 syllables/s) -- and a short pause is added for each
phrase break inside the line.

Thresholds. IndexTTS2's paper reports that its duration control keeps quality when the target
duration stays within 0.75x-1.25x of the natural one. With ``ratio = budget / natural``:

- exact modes: ``fits`` when ``0.85 <= ratio <= 1.15`` (the usable range narrowed by the
  estimate's own uncertainty), ``tight`` when ``0.75 <= ratio <= 1.25``, else ``impossible``
  (the model would have to speak faster than 1.33x or slower than 0.8x its natural rate);
- natural mode (the model chooses the length, which must not overrun the slot): ``fits`` when
  ``natural <= 0.9 * budget``, ``tight`` up to ``natural <= budget``, else ``impossible``.

Speaking-rate warning. Independently of the thresholds, the rate implied by the budget is compared
with the range people actually speak at (for alphabetic languages 2.0-7.5 syllables per second);
outside it the forecast carries a warning sentence.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass

from dubstudio.core.model import FitMode, Line, Project

#: Natural speaking rate (units per second) by language code; "cjk" units are characters.
DEFAULT_RATES: dict[str, float] = {
    "en": 4.2,
    "de": 4.2,
    "fr": 5.0,
    "es": 5.4,
    "it": 5.0,
    "pt": 5.0,
    "nl": 4.4,
    "ru": 4.6,
    "pl": 4.4,
    "zh": 4.2,
    "ja": 6.0,
    "ko": 5.0,
}
FALLBACK_RATE = 4.5
#: Languages counted in characters rather than syllables.
CHARACTER_LANGUAGES = frozenset({"zh", "ja", "ko"})

#: Pause added for each phrase break (comma, semicolon, dash) inside a line, and for each
#: sentence end that is not the last character.
PHRASE_PAUSE_S = 0.12
SENTENCE_PAUSE_S = 0.25

#: Exact-mode thresholds on ratio = budget / natural.
FITS_RANGE = (0.85, 1.15)
TIGHT_RANGE = (0.75, 1.25)
#: Natural-mode thresholds on natural / budget.
NATURAL_FITS_MAX = 0.9
#: Human speaking-rate range (syllables per second); CJK characters use the same range scaled.
HUMAN_RATE_RANGE = (2.0, 7.5)


class FitStatus(enum.StrEnum):
    """How well a line is expected to fit."""

    FITS = "fits"
    TIGHT = "tight"
    IMPOSSIBLE = "impossible"


@dataclass(frozen=True, slots=True)
class FitForecast:
    """The forecast for one line.

    Attributes:
        status: fits / tight / impossible.
        units: Syllables (or characters) counted in the speech text.
        unit_name: ``"syllables"`` or ``"characters"``.
        natural_seconds: Estimated natural speaking time.
        budget_seconds: Time the speech has.
        ratio: ``budget_seconds / natural_seconds`` (inf for empty text).
        implied_rate: Units per second the budget implies.
        message: One sentence a person can act on.
        warning: A speaking-rate warning, or None.
    """

    status: FitStatus
    units: int
    unit_name: str
    natural_seconds: float
    budget_seconds: float
    ratio: float
    implied_rate: float
    message: str
    warning: str | None = None


_VOWEL_GROUPS = re.compile(r"[aeiouyàáâãäåæèéêëìíîïòóôõöøùúûüýÿœаеёиоуыэюяąęó]+", re.I)
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*", re.UNICODE)
_DIGITS = re.compile(r"\d+")
_PHRASE_BREAK = re.compile(r"[,;:–—]|\s-\s|…|\.\.\.")
_SENTENCE_END = re.compile(r"[.!?。！？]+")


def count_syllables(word: str) -> int:
    """Vowel-group syllable estimate of one word (English-tuned, at least 1)."""
    lower = word.lower().replace("’", "'")
    groups = len(_VOWEL_GROUPS.findall(lower))
    # A final silent "e" ("make", "there") is not a syllable; "-le" after a consonant ("table") is.
    if lower.endswith("e") and not lower.endswith(("le", "ee", "ye")) and groups > 1:
        groups -= 1
    # A silent "e" before a suffix ("careful", "lonely", "movement") is not a syllable either.
    for suffix in ("ful", "ly", "ment", "ness", "less"):
        stem = lower[: -len(suffix)]
        if (
            lower.endswith(suffix)
            and len(stem) > 2
            and stem[-1] == "e"
            and stem[-2] not in "aeiouy"
        ):
            groups -= 1
            break
    # "-n't" after a consonant is a syllable of its own ("doesn't", "didn't"; not "don't").
    if lower.endswith("n't") and len(lower) > 3 and lower[-4] not in "aeiouy":
        groups += 1
    # Plural/verb "-es" is silent except after sibilants ("makes" vs "wishes").
    sibilant_es = ("ses", "zes", "ces", "ges", "shes", "ches", "xes")
    if lower.endswith("es") and groups > 1 and not lower.endswith(sibilant_es):
        groups -= 1
    return max(1, groups)


def _is_cjk(ch: str) -> bool:
    name = unicodedata.name(ch, "")
    return name.startswith(("CJK UNIFIED", "HIRAGANA", "KATAKANA", "HANGUL"))


def count_units(text: str, language: str = "en") -> tuple[int, str]:
    """Count speech units in a text: ``(count, "syllables" | "characters")``.

    CJK characters count one each in any language; digits count as about two syllables each
    number word they expand to (one per digit, which is close for the short numbers of dialogue).
    """
    cjk = sum(1 for ch in text if _is_cjk(ch))
    if language in CHARACTER_LANGUAGES or cjk > len(text) // 3:
        digits = sum(len(d) for d in _DIGITS.findall(text))
        latin = sum(count_syllables(w) for w in _WORD.findall(text) if not any(map(_is_cjk, w)))
        return cjk + latin + digits, "characters"
    syllables = sum(count_syllables(w) for w in _WORD.findall(text))
    syllables += sum(2 * len(d) for d in _DIGITS.findall(text))
    return syllables, "syllables"


def _pause_seconds(text: str) -> float:
    body = text.strip().rstrip(".!?。！？…\"'”’ ")
    return PHRASE_PAUSE_S * len(_PHRASE_BREAK.findall(body)) + SENTENCE_PAUSE_S * len(
        _SENTENCE_END.findall(body)
    )


def natural_seconds(text: str, language: str = "en", rate: float | None = None) -> float:
    """Estimated natural speaking time of a text in seconds (0 for text with nothing to say)."""
    units, _ = count_units(text, language)
    if units == 0:
        return 0.0
    speed = rate if rate else DEFAULT_RATES.get(language.split("-")[0].lower(), FALLBACK_RATE)
    return units / speed + _pause_seconds(text)


def forecast_fit(
    text: str,
    budget_seconds: float,
    fit_mode: FitMode = FitMode.EXACT,
    *,
    language: str = "en",
    rate: float | None = None,
) -> FitForecast:
    """Forecast whether ``text`` fits ``budget_seconds`` of speech.

    Args:
        text: Speech text (markup already stripped).
        budget_seconds: Seconds of speech the line has (slot minus margins).
        fit_mode: The line's fit mode.
        language: Language code of the voice ("en", "zh", ...).
        rate: Measured speaking rate of the voice in units per second, if known.

    Returns:
        The forecast.
    """
    lang = language.split("-")[0].lower()
    units, unit_name = count_units(text, lang)
    natural = natural_seconds(text, lang, rate)
    implied = units / budget_seconds if budget_seconds > 0 else float("inf")
    if units == 0:
        return FitForecast(
            FitStatus.FITS, 0, unit_name, 0.0, budget_seconds, float("inf"), 0.0,
            "Nothing to say: the line renders as silence.",
        )  # fmt: skip
    ratio = budget_seconds / natural if natural > 0 else float("inf")
    if fit_mode is FitMode.NATURAL:
        load = natural / budget_seconds if budget_seconds > 0 else float("inf")
        if load <= NATURAL_FITS_MAX:
            status, message = FitStatus.FITS, "Natural length fits the slot."
        elif load <= 1.0:
            status, message = FitStatus.TIGHT, "Natural length only just fits the slot."
        else:
            status = FitStatus.IMPOSSIBLE
            message = (
                f"At natural length it overruns the slot by about {natural - budget_seconds:.1f} s;"
                " use an exact fit mode, lengthen the slot or shorten the text."
            )
    elif FITS_RANGE[0] <= ratio <= FITS_RANGE[1]:
        status, message = FitStatus.FITS, "Fits at a natural pace."
    elif TIGHT_RANGE[0] <= ratio <= TIGHT_RANGE[1]:
        pace = "faster" if ratio < 1 else "slower"
        status, message = FitStatus.TIGHT, f"Fits, spoken noticeably {pace} than natural."
    elif ratio < TIGHT_RANGE[0]:
        status = FitStatus.IMPOSSIBLE
        message = (
            f"Needs {1 / ratio:.2f}x natural speed (quality holds up to 1.33x); "
            "shorten the text or lengthen the slot."
        )
    else:
        status = FitStatus.IMPOSSIBLE
        message = (
            f"Needs {1 / ratio:.2f}x natural speed (drawn out); use the natural or "
            "exact-with-margins fit mode, or shorten the slot."
        )
    low, high = HUMAN_RATE_RANGE
    if unit_name == "characters":
        scale = DEFAULT_RATES.get(lang, FALLBACK_RATE) / DEFAULT_RATES["en"]
        low, high = low * scale, high * scale
    warning = None
    if fit_mode is not FitMode.NATURAL or ratio < 1:
        if implied > high:
            warning = (
                f"Speaking rate {implied:.1f} {unit_name}/s is faster than people speak "
                f"(above {high:.1f})."
            )
        elif implied < low and fit_mode is not FitMode.NATURAL:
            warning = (
                f"Speaking rate {implied:.1f} {unit_name}/s is unnaturally slow (below {low:.1f})."
            )
    return FitForecast(
        status, units, unit_name, natural, budget_seconds, ratio, implied, message, warning
    )


def forecast_line(project: Project, line: Line) -> FitForecast:
    """Forecast a line of a project, using its voice's language and measured rate when known."""
    budget = project.line_budget(line)
    language, rate = "en", None
    voice_id = project.effective_voice_id(line)
    if voice_id is not None and any(v.id == voice_id for v in project.voices):
        voice = project.voice(voice_id)
        language, rate = voice.language, voice.speaking_rate
    else:
        language = str(project.settings.get("language", "en"))
    seconds = budget.speech_samples / project.sample_rate
    return forecast_fit(line.speech_text, seconds, line.fit_mode, language=language, rate=rate)
