"""Forced alignment of untimed corpus utterances (RHVoice, Pico) with the frame tokenizer.

The engines that report no phone timings still say which words they spoke, so the phone
sequence is known from the lexicon; what is missing is where each phone lies. The frame
tokenizer, trained on the voices whose engines report exact timings, gives per-frame phone
log-probabilities, and a monotonic Viterbi pass finds the segmentation of the known sequence
that maximises their sum (each phone at least one frame; the leading and trailing pauses may
be empty). The result is stored in ``metadata.jsonl`` as ordinary ``(phone, end_s)`` timings,
so features and training treat aligned and engine-timed utterances alike.

Dimension legend: P phone classes, F mel frames, N phones in the sequence.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from dubstudio.engine.audio import mel_spectrogram, resample
from dubstudio.engine.small import FrameTokenizer, mel_config
from dubstudio.engine.text.phonemes import PHONE_INDEX, PhonemeFrontEnd
from dubstudio.training.corpus import read_metadata, write_metadata

log = logging.getLogger(__name__)


def phone_sequence(front_end: PhonemeFrontEnd, text: str) -> list[str]:
    """``pau`` + the text's phones (word marks and spelled letters dropped) + ``pau``."""
    return ["pau", *(u for u in front_end.units(text) if u in PHONE_INDEX and u != "pau"), "pau"]


def viterbi_align(logp: np.ndarray, phones: Sequence[int]) -> list[int]:
    """Frame spans of a phone sequence by monotonic Viterbi over frame log-probabilities.

    The first and last phones (pauses) may take zero frames; every other phone takes at least
    one.

    Args:
        logp: (P, F) log-probability of each phone class at each frame.
        phones: (N,) phone classes in spoken order.

    Returns:
        (N,) end frame (exclusive) of each phone; a skipped pause ends where it starts.
    """
    n, frames = len(phones), logp.shape[1]
    if frames < n - 2:
        raise ValueError(f"{frames} frames cannot hold {n - 2} phones")
    emit = logp[np.asarray(phones)]  # (N, F)
    neg = -np.inf
    score = np.full(n, neg)
    score[0], score[1] = emit[0, 0], emit[1, 0]  # start in the pause or skip it
    advanced = np.zeros((frames, n), dtype=bool)  # frame f entered its state from the previous
    for f in range(1, frames):
        adv = np.concatenate(([neg], score[:-1]))
        advanced[f] = adv > score
        score = np.maximum(score, adv) + emit[:, f]
    # End in the trailing pause, or before it (an empty trailing pause).
    state = n - 1 if score[n - 1] >= score[n - 2] else n - 2
    ends = [frames] * n
    for f in range(frames - 1, 0, -1):
        if advanced[f, state]:
            state -= 1
            ends[state] = f
    if state == 1:  # the leading pause was skipped
        ends[0] = 0
    return ends


@torch.inference_mode()
def align_utterance(
    tokenizer: FrameTokenizer, front_end: PhonemeFrontEnd, audio: np.ndarray, rate: int, text: str
) -> list[tuple[str, float]]:
    """(phone, end_s) timings of one utterance of ``text``."""
    cfg = mel_config()
    wav = resample(torch.from_numpy(audio).float(), rate, cfg.sample_rate)
    mel = mel_spectrogram(wav[None], cfg)  # (1, M, F)
    logp = tokenizer(mel).log_softmax(dim=1)[0].numpy()  # (P, F)
    names = phone_sequence(front_end, text)
    # The lexicon has no stress marks, so it cannot tell a reduced vowel (``ax``, as the timed
    # engines label it) from ``ah``: the row ``ah`` scores the better of the two, and each
    # aligned span takes whichever the tokenizer favours over it.
    ah, ax = PHONE_INDEX["ah"], PHONE_INDEX["ax"]
    ah_row = logp[ah].copy()
    logp[ah] = np.maximum(ah_row, logp[ax])
    ends = viterbi_align(logp, [PHONE_INDEX[p] for p in names])
    sec = cfg.hop / cfg.sample_rate
    out = []
    for name, a, e in zip(names, [0, *ends[:-1]], ends, strict=True):
        if e <= a:
            continue
        if name == "ah" and logp[ax, a:e].sum() > ah_row[a:e].sum():
            name = "ax"
        out.append((name, e * sec))
    return out


def align_corpus(
    corpus_dir: str | Path,
    tokenizer: FrameTokenizer,
    front_end: PhonemeFrontEnd,
    *,
    on_progress: Callable[[float, str], None] | None = None,
) -> int:
    """Align every utterance of ``corpus_dir`` that has no phone timings; rewrite the metadata.

    Returns:
        How many utterances were aligned.
    """
    import soundfile as sf

    corpus = Path(corpus_dir)
    utts = read_metadata(corpus)
    todo = [u for u in utts if not u.phones]
    tokenizer = tokenizer.eval()
    for k, utt in enumerate(todo):
        audio, rate = sf.read(str(corpus / utt.wav), dtype="float32")
        utt.phones = align_utterance(tokenizer, front_end, audio, rate, utt.text)
        if on_progress is not None and k % 200 == 0:
            on_progress(k / max(1, len(todo)), "align")
    if todo:
        write_metadata(corpus, utts)
    log.info("aligned %d utterances", len(todo))
    return len(todo)
