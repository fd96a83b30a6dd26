"""Splitting a token sequence into segments the GPT can take (IndexTTS-2 rules, ENGINE_SPEC 2.5).

Rules: end a sentence after a sentence-final piece once it holds more than 2 pieces (a closing
quote right after it stays with it); a sentence longer than the limit is re-split at commas,
then at hyphens, then cut hard; neighbours are merged while they fit the limit. Unlike the
official splitter, the whole over-long sentence (not just its first limit + 1 pieces) is
re-split, and a closing quote is not duplicated into the next segment.
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


def _sentences(pieces: Sequence[str], ends: Sequence[str]) -> list[list[str]]:
    """Cut after every end piece once the run holds more than 2 pieces."""
    out: list[list[str]] = []
    current: list[str] = []
    i = 0
    while i < len(pieces):
        piece = pieces[i]
        current.append(piece)
        i += 1
        if piece in ends and len(current) > 2:
            if i < len(pieces) and pieces[i] in QUOTE_PIECES:  # a closing quote stays
                current.append(pieces[i])
                i += 1
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


def _merge(runs: list[list[str]], limit: int) -> list[list[str]]:
    merged: list[list[str]] = []
    for run in runs:
        if merged and len(merged[-1]) + len(run) <= limit:
            merged[-1] = merged[-1] + run
        else:
            merged.append(run)
    return merged


def _split(pieces: Sequence[str], limit: int, level: int) -> list[list[str]]:
    """Split at this level's break pieces; runs still too long go one level down."""
    levels = (SENTENCE_END_PIECES, COMMA_PIECES, HYPHEN_PIECES)
    if level >= len(levels):
        log.warning("A sentence has more than %d tokens without a break; cutting it hard.", limit)
        return [list(pieces[j : j + limit]) for j in range(0, len(pieces), limit)]
    out: list[list[str]] = []
    for run in _sentences(pieces, levels[level]):
        out.extend(_split(run, limit, level + 1) if len(run) > limit else [run])
    return _merge(out, limit)


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
    return _split(list(pieces), max_tokens, 0)
