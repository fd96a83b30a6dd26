"""The official IndexTTS-2 text front-end: normalisation + SentencePiece BPE (`bpe.model`)."""

from __future__ import annotations

import logging
from pathlib import Path

from dubstudio.core.errors import ModelLoadError
from dubstudio.engine.text.normalize import OfficialNormalizer
from dubstudio.engine.text.segment import split_pieces

log = logging.getLogger(__name__)


class BpeFrontEnd:
    """`TextFrontEnd` over a SentencePiece model, with the official normalisation.

    Args:
        model_path: The bundle's `bpe.model`.
        normalizer: Text normaliser; None builds `OfficialNormalizer()`.
    """

    def __init__(
        self, model_path: str | Path, normalizer: OfficialNormalizer | None = None
    ) -> None:
        import sentencepiece

        path = Path(model_path)
        if not path.is_file():
            raise ModelLoadError(f"Tokenizer model not found: {path}. Check the model directory.")
        try:
            self.sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
        except Exception as exc:  # sentencepiece raises bare RuntimeError/OSError
            raise ModelLoadError(f"Could not read the tokenizer model {path}: {exc}") from exc
        self.normalizer = normalizer or OfficialNormalizer()

    @classmethod
    def from_bundle_dir(cls, model_dir: str | Path) -> BpeFrontEnd:
        """The front-end of an official model directory (reads `<dir>/bpe.model`)."""
        return cls(Path(model_dir) / "bpe.model")

    @property
    def vocab_size(self) -> int:
        """Number of SentencePiece pieces (12000 for IndexTTS-2)."""
        return int(self.sp.GetPieceSize())

    def normalize(self, text: str) -> str:
        """The string handed to SentencePiece (a single visible character is left raw)."""
        if len(text.strip()) <= 1:
            return text
        return self.normalizer(text)

    def pieces(self, text: str) -> list[str]:
        """SentencePiece pieces of the normalised text."""
        if not text:
            return []
        return list(self.sp.Encode(self.normalize(text), out_type=str))

    def encode(self, text: str) -> list[int]:
        """Ids of the whole text (no start/stop ids)."""
        return [int(self.sp.PieceToId(p)) for p in self.pieces(text)]

    def segments(self, text: str, max_tokens: int = 120) -> list[list[int]]:
        """Ids split into segments of at most `max_tokens` (sentence ends, commas, hyphens)."""
        return [
            [int(self.sp.PieceToId(p)) for p in segment]
            for segment in split_pieces(self.pieces(text), max_tokens)
        ]

    def decode(self, ids: list[int]) -> str:
        """Ids back to (normalised, upper-case) text, for display."""
        return str(self.sp.Decode(ids))
