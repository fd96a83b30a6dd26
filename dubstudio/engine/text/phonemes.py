"""Phoneme front-end of the bundled small model: words -> ARPAbet phones from a CMU lexicon.

The phone inventory is the one Flite's US voices use (``pau`` for pauses, ``ax`` for schwa), so
text phones and the semantic tokens (frame-level phone classes) share one set of names; the T2S
GPT then mostly copies and times its input. Words missing from the lexicon are spelled letter by
letter with letter tokens. The lexicon (CMUdict, BSD-2-Clause) ships inside the model bundle.

Token ids: 0 = start, 1 = stop (the GPT's text specials), then `PHONES`, then word-boundary and
punctuation marks, then the 26 letters.
"""

from __future__ import annotations

import re
import string
from pathlib import Path

#: Phone classes; index i is semantic token i (``pau`` = 0 is silence).
PHONES: tuple[str, ...] = (
    "pau", "aa", "ae", "ah", "ao", "aw", "ax", "ay", "b", "ch", "d", "dh", "eh", "er", "ey",
    "f", "g", "hh", "ih", "iy", "jh", "k", "l", "m", "n", "ng", "ow", "oy", "p", "r", "s",
    "sh", "t", "th", "uh", "uw", "v", "w", "y", "z", "zh",
)  # fmt: skip
PHONE_INDEX = {p: i for i, p in enumerate(PHONES)}
MARKS: tuple[str, ...] = ("_", ",", ".", "?", "!")
LETTERS = tuple(string.ascii_lowercase)
TEXT_SPECIALS = 2
VOCAB_SIZE = TEXT_SPECIALS + len(PHONES) + len(MARKS) + len(LETTERS)

_WORD = re.compile(r"[a-z']+|[,.?!;:]")
_NUMBERS = {
    "0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six",
    "7": "seven", "8": "eight", "9": "nine",
}  # fmt: skip


def phone_of(arpabet: str) -> str:
    """CMUdict phone (``AH0``) -> inventory name (``ax``; stress dropped, other AH -> ``ah``)."""
    base = arpabet.rstrip("012").lower()
    if base == "ah" and arpabet.endswith("0"):
        return "ax"
    return base if base in PHONE_INDEX else "ah"


def read_lexicon(path: str | Path) -> dict[str, list[str]]:
    """CMUdict-format file (``word PH1 PH2 ...``, alternates as ``word(2)``) -> first reading."""
    lex: dict[str, list[str]] = {}
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split()
        if len(parts) < 2 or parts[0].startswith(";;;"):
            continue
        word = parts[0].lower()
        if "(" in word:
            continue
        lex.setdefault(word, [phone_of(p) for p in parts[1:] if not p.startswith("#")])
    return lex


def default_lexicon_path() -> Path | None:
    """The CMU dictionary inside the installed ``pocketsphinx`` package, if any (for training)."""
    try:
        import pocketsphinx
    except ImportError:
        return None
    path = Path(pocketsphinx.__file__).parent / "model" / "en-us" / "cmudict-en-us.dict"
    return path if path.is_file() else None


class PhonemeFrontEnd:
    """`TextFrontEnd` of the small model.

    Args:
        lexicon: Word -> phones.
        max_tokens: Longest segment the model's text table holds.
    """

    def __init__(self, lexicon: dict[str, list[str]], max_tokens: int = 200) -> None:
        self.lexicon = lexicon
        self.max_tokens = max_tokens

    @classmethod
    def from_file(cls, path: str | Path, max_tokens: int = 200) -> PhonemeFrontEnd:
        """Front-end over a CMUdict-format lexicon file."""
        return cls(read_lexicon(path), max_tokens)

    def normalize(self, text: str) -> str:
        """Lower-case, digits spelled out, whitespace collapsed."""
        text = text.lower().replace("\u2019", "'")
        text = "".join(f" {_NUMBERS[c]} " if c in _NUMBERS else c for c in text)
        return " ".join(text.split())

    def units(self, text: str) -> list[str]:
        """Phone / mark / letter names of a text (word boundaries as ``_``)."""
        out: list[str] = []
        for match in _WORD.finditer(self.normalize(text)):
            word = match.group(0)
            if word in ",.?!;:":
                out.append({";": ",", ":": ","}.get(word, word))
                continue
            if out and out[-1] not in MARKS:
                out.append("_")
            phones = self.lexicon.get(word) or self.lexicon.get(word.strip("'"))
            if phones:
                out.extend(phones)
            else:
                out.extend(ch for ch in word if ch in LETTERS)
        return out

    def encode(self, text: str) -> list[int]:
        """Token ids of a text (no start/stop)."""
        ids = []
        for unit in self.units(text):
            if unit in PHONE_INDEX:
                ids.append(TEXT_SPECIALS + PHONE_INDEX[unit])
            elif unit in MARKS:
                ids.append(TEXT_SPECIALS + len(PHONES) + MARKS.index(unit))
            else:
                ids.append(TEXT_SPECIALS + len(PHONES) + len(MARKS) + LETTERS.index(unit))
        return ids

    def segments(self, text: str, max_tokens: int = 120) -> list[list[int]]:
        """Sentence-split token lists, each at most ``min(max_tokens, self.max_tokens)`` long."""
        limit = min(max_tokens, self.max_tokens)
        out: list[list[int]] = []
        for sentence in re.split(r"(?<=[.!?])\s+", text.strip()):
            ids = self.encode(sentence)
            out.extend(ids[i : i + limit] for i in range(0, len(ids), limit))
        return [s for s in out if s]
