"""The `TextFrontEnd` protocol: how a model bundle turns a line of text into token ids."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class TextFrontEnd(Protocol):
    """Text normalisation + tokenisation for one T2S model.

    Ids exclude the model's start/stop text tokens (the GPT adds them).
    """

    @property
    def vocab_size(self) -> int:
        """Number of distinct ids `encode` can return."""
        ...

    def normalize(self, text: str) -> str:
        """The text exactly as the tokenizer sees it (for display and debugging)."""
        ...

    def encode(self, text: str) -> list[int]:
        """Token ids of the whole text (no segmentation)."""
        ...

    def segments(self, text: str, max_tokens: int = 120) -> list[list[int]]:
        """Token ids split into segments of at most `max_tokens`, at sentence ends if possible."""
        ...
