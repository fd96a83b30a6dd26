"""Text front-ends: normalisation and tokenisation feeding the T2S GPT.

`TextFrontEnd` is the protocol a bundle's front-end implements; `BpeFrontEnd` is the official
IndexTTS-2 one (SentencePiece `bpe.model` + the official normalisation).
"""

from __future__ import annotations

from dubstudio.engine.text.base import TextFrontEnd
from dubstudio.engine.text.bpe import BpeFrontEnd
from dubstudio.engine.text.normalize import OfficialNormalizer
from dubstudio.engine.text.segment import split_pieces

__all__ = ["BpeFrontEnd", "OfficialNormalizer", "TextFrontEnd", "split_pieces"]
