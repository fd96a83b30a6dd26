"""Text normalisation the official IndexTTS-2 model was trained with (ENGINE_SPEC 2.5).

Pipeline: expand "<word>'s" contractions; protect the hyphens of technical terms (GPT-5),
toned pinyin (``zhong4``) and Chinese names behind placeholders; WeText TN (Chinese branch
when the text has CJK, no Latin letters, is an e-mail, or carries toned pinyin; English
otherwise); restore the protected spans (pinyin upper-cased, j/q/x + u/ü written with v); map
punctuation; then space out CJK characters and upper-case everything. Without the `wetext`
package only the TN step is skipped. Not reproduced: the optional term glossary and the
`<word|pron>` annotations of later releases.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

log = logging.getLogger(__name__)

# Punctuation the tokenizer was trained without, mapped to what it knows.
PUNCTUATION_MAP: dict[str, str] = {
    "：": ",", "；": ",", ";": ",", "，": ",", "。": ".", "！": "!", "？": "?", "\n": " ",
    "·": "-", "、": ",", "...": "…", ",,,": "…", "，，，": "…", "……": "…",
    "“": "'", "”": "'", '"': "'", "‘": "'", "’": "'", "（": "'", "）": "'", "(": "'",
    ")": "'", "《": "'", "》": "'", "【": "'", "】": "'", "[": "'", "]": "'", "—": "-",
    "～": "-", "~": "-", "「": "'", "」": "'", ":": ",",
}  # fmt: skip
# The Chinese branch also reads "$" as a full stop.
PUNCTUATION_MAP_ZH: dict[str, str] = {"$": ".", **PUNCTUATION_MAP}

_INITIALS = "zh|ch|sh|[bpmfdtnlgkhjqxzcsryw]"
_FINAL_LIST = [
    "a", "e", "i", "o", "u", "ü", "v", "ai", "ei", "ua", "ui", "uo", "ao", "ou", "ia", "iu",
    "ie", "ue", "üe", "ve", "an", "en", "in", "un", "vn", "uan", "van", "üan", "uai", "ang",
    "eng", "ing", "ong", "uang", "vang", "üang", "ian", "iao", "iang", "iong",
]  # fmt: skip
_FINALS = sorted(_FINAL_LIST, key=len, reverse=True)
#: A toned pinyin syllable: optional initial, a final (or "ng"/"er"), a tone digit 1-5, not
#: preceded by a letter ("beta1" and "voice2" are not pinyin).
PINYIN_TONE_RE = re.compile(
    rf"(?<![a-z])((?:(?:{_INITIALS})?(?:{'|'.join(_FINALS)})|ng|er)[1-5])", re.IGNORECASE
)
#: Chinese names written with a middle dot or hyphen (克里斯托弗·诺兰), kept out of TN.
NAME_RE = re.compile(r"[\u4e00-\u9fff]+(?:[-·—][\u4e00-\u9fff]+){1,2}")
#: Hyphenated technical terms (GPT-5-Nano, F5-TTS): their hyphens must not become "minus".
TECH_TERM_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)+")
_HYPHEN_MARK = "<H>"
_HYPHEN_MARK_RE = re.compile(r"\s*<H>\s*")
_CONTRACTION_RE = re.compile(
    r"\b(what|where|who|which|how|t?here|it|s?he|that|this)'s\b", re.IGNORECASE
)
_CJK_RE = re.compile(
    "([\u1100-\u11ff\u2e80-\ua4cf\ua840-\ud7af\uf900-\ufaff\ufe30-\ufe4f\uff65-\uffdc"
    "\U00020000-\U0002ffff])"
)
_HAN_RE = re.compile(r"[\u4e00-\u9fff]")
_LATIN_RE = re.compile(r"[a-zA-Z]")
_EMAIL_RE = re.compile(r"^[a-zA-Z0-9]+@[a-zA-Z0-9]+\.[a-zA-Z]+$")


def uses_chinese_branch(text: str) -> bool:
    """True when the official normaliser would take its Chinese branch."""
    if _HAN_RE.search(text) or not _LATIN_RE.search(text) or _EMAIL_RE.match(text):
        return True
    return PINYIN_TONE_RE.search(text) is not None


def correct_pinyin(syllable: str) -> str:
    """Upper-case a toned syllable; after j/q/x the vowel u/ü is written v (ju4 -> JV4)."""
    if syllable[0].lower() in "jqx":
        syllable = re.sub(r"^([jqx])[uü]", r"\1v", syllable, flags=re.IGNORECASE)
    return syllable.upper()


def space_cjk(text: str) -> str:
    """Put spaces around every CJK character and upper-case the rest (official pre-tokenizer)."""
    parts = _CJK_RE.split(text.strip().upper())
    return " ".join(p.strip() for p in parts if p.strip())


def map_punctuation(text: str, chinese: bool) -> str:
    """Replace punctuation by the forms the BPE model knows."""
    table = PUNCTUATION_MAP_ZH if chinese else PUNCTUATION_MAP
    pattern = _punctuation_pattern(chinese)
    return pattern.sub(lambda m: table[m.group()], text)


@functools.cache
def _punctuation_pattern(chinese: bool) -> re.Pattern[str]:
    table = PUNCTUATION_MAP_ZH if chinese else PUNCTUATION_MAP
    keys = sorted(table, key=len, reverse=True)  # longest first: "..." before "."
    return re.compile("|".join(re.escape(k) for k in keys))


def _protect_tech_terms(text: str) -> tuple[str, bool]:
    """Mark the hyphens of technical terms so TN leaves them (digits inside are still read)."""
    terms = sorted(set(TECH_TERM_RE.findall(text)), key=len, reverse=True)
    for term in terms:
        text = text.replace(term, term.replace("-", _HYPHEN_MARK))
    return text, bool(terms)


def _restore_tech_terms(text: str, found: bool) -> str:
    return _HYPHEN_MARK_RE.sub("-", text) if found else text


def _protect(text: str, pattern: re.Pattern[str], tag: str) -> tuple[str, list[str]]:
    found = list(dict.fromkeys(m.group(0) for m in pattern.finditer(text)))
    for i, span in enumerate(found):
        text = text.replace(span, f"<{tag}_{chr(ord('a') + i)}>")
    return text, found


def _restore(text: str, found: list[str], tag: str, fix: Any = None) -> str:
    for i, span in enumerate(found):
        text = text.replace(f"<{tag}_{chr(ord('a') + i)}>", fix(span) if fix else span)
    return text


@functools.cache
def _wetext(lang: str) -> Any:
    try:
        from wetext import Normalizer
    except ImportError:
        log.warning(
            "The 'wetext' package is missing: numbers, dates and symbols are not spelled out "
            "(install dubstudio[render])."
        )
        return None
    if lang == "zh":
        return Normalizer(lang="zh", operator="tn", remove_erhua=False)
    return Normalizer(lang="en", operator="tn")


class OfficialNormalizer:
    """Normalises a line the way IndexTTS-2's `TextNormalizer` + CJK pre-tokenizer do.

    Args:
        use_tn: Run WeText number/date/symbol verbalisation (False: punctuation and casing only,
            e.g. for fast tests).
    """

    def __init__(self, use_tn: bool = True) -> None:
        self.use_tn = use_tn

    def _tn(self, text: str, lang: str) -> str:
        if not self.use_tn:
            return text
        normalizer = _wetext(lang)
        if normalizer is None:
            return text
        try:
            return str(normalizer.normalize(text))
        except Exception:  # a TN grammar failure must not lose the line
            log.exception("Text normalisation failed; using the raw text")
            return text

    def normalize(self, text: str) -> str:
        """Normalised text before CJK spacing / upper-casing."""
        text = _CONTRACTION_RE.sub(r"\1 is", text)
        if uses_chinese_branch(text):
            text, tech = _protect_tech_terms(text.rstrip())
            text, pinyin = _protect(text, PINYIN_TONE_RE, "pinyin")
            text, names = _protect(text, NAME_RE, "n")
            text = self._tn(text, "zh")
            text = _restore(text, names, "n")
            text = _restore(text, pinyin, "pinyin", correct_pinyin)
            text = _restore_tech_terms(text, tech)
            return map_punctuation(text, chinese=True)
        text, tech = _protect_tech_terms(text)
        text = _restore_tech_terms(self._tn(text, "en"), tech)
        return map_punctuation(text, chinese=False)

    def __call__(self, text: str) -> str:
        """Full pre-tokenizer output: normalised, CJK spaced, upper-cased."""
        return space_cjk(self.normalize(text))
