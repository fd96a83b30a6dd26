"""Splitting a token sequence into segments the GPT can take (IndexTTS-2 rules, ENGINE_SPEC 2.5).

Rules: end a segment after a sentence-final piece once it holds more than 2 pieces (a closing
quote right after it stays with it); a run longer than the limit is re-split at commas, then
at hyphens, then cut hard; finally neighbours are merged while they fit the limit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

log = logging.getLogger(__name__)

#: Sentence-final pieces of the official bpe.model ('▁!' is not a piece there).
SENTENCE_END_PIECES: tuple[str, ...] = (".", "!", "?", "\u2581.", "\u2581?", "\u2581...")
COMMA_PIECES: tuple[str, ...] = (",", "\u2581,")
HYPHEN_PIECES: tuple[str, ...] = ("-",)
QUOTE_PIECES: tuple[str, ...] = ("'", "\u2581'")


def _split(pieces: Sequence[str], ends: Sequence[str], limit: int, level: int) -> list[list[str]]:
    out: list[list[str]] = []
    current: list[str] = []
    i = 0
    while i < len(pieces):
        piece = pieces[i]
        current.append(piece)
        i += 1
        if len(current) <= limit:
            if piece in ends and len(current) > 2:
                if i < len(pieces) and pieces[i] in QUOTE_PIECES and len(current) < limit:
                    current.append(pieces[i])
                    i += 1
                out.append(current)
                current = []
            continue
        out.extend(_resplit(current, limit, level))
        current = []
    if current:
        out.extend(_resplit(current, limit, level) if len(current) > limit else [current])
    return out


def _resplit(run: list[str], limit: int, level: int) -> list[list[str]]:
    """Split an over-long run at commas, else hyphens, else every `limit` pieces."""
    if level < 1 and any(p in COMMA_PIECES for p in run):
        return _split(run, COMMA_PIECES, limit, 1)
    if level < 2 and any(p in HYPHEN_PIECES for p in run):
        return _split(run, HYPHEN_PIECES, limit, 2)
    log.warning("A sentence has more than %d tokens without a break; cutting it hard.", limit)
    return [run[j : j + limit] for j in range(0, len(run), limit)]


def split_pieces(pieces: Sequence[str], max_tokens: int = 120) -> list[list[str]]:
    """Split SentencePiece pieces into segments of at most `max_tokens` pieces.

    Args:
        pieces: Pieces of one text (`SentencePieceProcessor.Encode(out_type=str)`).
        max_tokens: Segment limit (official default 120).

    Returns:
        Non-empty segments whose concatenation is `pieces`.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be positive")
    sentences = _split(list(pieces), SENTENCE_END_PIECES, max_tokens, 0)
    merged: list[list[str]] = []
    for sentence in sentences:
        if not sentence:
            continue
        if merged and len(merged[-1]) + len(sentence) <= max_tokens:
            merged[-1] = merged[-1] + sentence
        else:
            merged.append(sentence)
    return merged
