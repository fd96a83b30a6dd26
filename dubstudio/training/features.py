"""Feature extraction for training: log-mel, frame phone labels, semantic codes, GE2E style.

The semantic code of a token frame is its phone class (from the engine's timings) times the
phone's pitch bin (`dubstudio.engine.small.pitch_codes`), with the log-F0 normalised by the
(pseudo-)speaker's calm utterances.

Dimension legend: M mel bands (80), F mel frames (86.13 Hz), T_tok tokens (bundle token rate),
S style width (256).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dubstudio.core.errors import ValidationError
from dubstudio.engine.analysis import pitch_track
from dubstudio.engine.audio import mel_spectrogram, resample
from dubstudio.engine.small import (
    GE2EEncoder,
    log_f0_stats,
    mel_config,
    phone_log_f0,
    pitch_bins,
    pitch_codes,
    small_config,
)
from dubstudio.engine.text.phonemes import PHONE_INDEX
from dubstudio.training.corpus import Utterance, read_metadata, speaker_of

log = logging.getLogger(__name__)

TOKEN_RATE = Fraction(small_config()["token_rate"])
BINS = pitch_bins(small_config())  # the default
STYLE_SAMPLES = 6


@dataclass
class Item:
    """Features of one utterance.

    Attributes:
        utt: Its metadata.
        mel: (M, F) log-mel.
        frame_labels: (F,) phone class per mel frame.
        codes: (T_tok,) semantic code per token frame (phone class x pitch bin).
        style: (S,) GE2E embedding.
    """

    utt: Utterance
    mel: torch.Tensor
    frame_labels: torch.Tensor
    codes: torch.Tensor
    style: torch.Tensor


def labels_at(times: np.ndarray, phones: list[tuple[str, float]]) -> torch.Tensor:
    """Phone class at each time (s) from (phone, end) timings; past the end -> ``pau``."""
    ends = np.array([end for _, end in phones])
    ids = np.array([PHONE_INDEX.get(name, 0) for name, _ in phones] + [0])
    return torch.from_numpy(ids[np.searchsorted(ends, times, side="right")]).long()


def n_tokens_for_frames(frames: int, token_rate: Fraction = TOKEN_RATE) -> int:
    """Token count of ``frames`` mel frames (same rule as `SmallReferenceEncoder.n_tokens`)."""
    cfg = mel_config()
    return max(1, round(Fraction(frames) * token_rate * cfg.hop / cfg.sample_rate))


def extract(
    corpus_dir: str | Path,
    out_path: str | Path,
    *,
    timed_only: bool = False,
    bins: int = BINS,
    on_progress: Callable[[float, str], None] | None = None,
) -> Path:
    """Compute `Item`s for every utterance and save them (torch file of plain tensors/dicts).

    Records already in ``out_path`` are kept for every (pseudo-)speaker whose utterances, phone
    timings and audio files (by SHA-1) are all unchanged: a speaker's codes and styles depend
    on that speaker's utterances only (its calm pitch statistics, its style groups), so after
    the alignment only the aligned voices are computed again.

    Args:
        timed_only: Skip utterances without phone timings (not aligned yet): the features the
            frame tokenizer trains on before it aligns them (`dubstudio.training.align`).
        bins: Pitch levels per phone in the codes (`dubstudio.engine.small.PITCH_EDGES`);
            stored records with another count are computed again.
    """
    import soundfile as sf

    cfg = mel_config()
    hop16 = round(16000 / TOKEN_RATE)
    ge2e = GE2EEncoder.pretrained()
    utts = [u for u in read_metadata(corpus_dir) if u.phones or not timed_only]
    digests = {u.uid: _file_digest(Path(corpus_dir) / u.wav) for u in utts}
    kept = _reusable(utts, Path(out_path), digests, bins)
    utts = [u for u in utts if u.uid not in kept]
    records: list[dict[str, Any]] = []
    # GE2E is the slow part: embed up to STYLE_SAMPLES utterances per (voice, style, split)
    # group and give every utterance its group's mean (what a reference clip of that voice and
    # style yields), instead of embedding all of them.
    groups: dict[tuple[str, str, str], list[torch.Tensor]] = {}
    calm_f0: dict[str, list[torch.Tensor]] = {}
    for i, utt in enumerate(utts):
        audio, rate = sf.read(str(Path(corpus_dir) / utt.wav), dtype="float32")
        wav = torch.from_numpy(audio)
        mel = mel_spectrogram(resample(wav, rate, cfg.sample_rate)[None], cfg)[0]
        frames = mel.shape[-1]
        t_frames = (np.arange(frames) + 0.5) * cfg.hop / cfg.sample_rate
        n_tok = n_tokens_for_frames(frames)
        t_tok = (np.arange(n_tok) + 0.5) / float(TOKEN_RATE)
        wav16 = resample(wav, rate, 16000)
        key = (speaker_of(utt), utt.style, utt.split)
        group = groups.setdefault(key, [])
        if len(group) < STYLE_SAMPLES:
            group.append(ge2e.embed(wav16))
        phones = labels_at(t_tok, utt.phones)
        f0 = pitch_track(wav16.numpy(), 16000, hop16)
        f0 = torch.nn.functional.pad(f0, (0, max(0, n_tok - f0.numel())))[:n_tok]
        log_f0 = phone_log_f0(phones, f0)
        if utt.style == "calm":
            calm_f0.setdefault(key[0], []).append(log_f0)
        records.append(
            {
                "meta": utt.__dict__,
                "audio_sha1": digests[utt.uid],
                "mel": mel.half(),
                "frame_labels": labels_at(t_frames, utt.phones).to(torch.uint8),
                "phones": phones,
                "log_f0": log_f0,
                "group": key,
            }
        )
        if on_progress is not None and i % 100 == 0:
            on_progress(i / len(utts), "features")
    means = {k: torch.stack(v).mean(0) for k, v in groups.items()}
    stats = {spk: log_f0_stats(v) for spk, v in calm_f0.items()}
    for r in records:
        group = r.pop("group")
        m = means[group]
        r["style"] = m / m.norm()
        spk = group[0]
        mean, std = stats.get(spk, log_f0_stats([r["log_f0"]]))
        r["codes"] = pitch_codes(r.pop("phones"), r.pop("log_f0"), mean, std, bins).to(torch.uint8)
        r["pitch_bins"] = bins
    records += kept.values()
    log.info("features: %d computed, %d kept", len(records) - len(kept), len(kept))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(records, str(out))
    return out


def _file_digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha1").hexdigest()


def _reusable(
    utts: list[Utterance], path: Path, digests: dict[str, str], bins: int
) -> dict[str, dict[str, object]]:
    """Stored records (by uid) of the speakers whose utterances are all stored, unchanged
    (metadata and audio, ``digests`` by uid), with codes of ``bins`` pitch levels."""
    if not path.is_file():
        return {}
    records = torch.load(str(path), map_location="cpu", weights_only=True)
    stored = {r["meta"]["uid"]: r for r in records}
    by_speaker: dict[str, list[Utterance]] = {}
    for u in utts:
        by_speaker.setdefault(speaker_of(u), []).append(u)

    def same(u: Utterance) -> bool:
        r = stored.get(u.uid)
        if r is None or r.get("audio_sha1") != digests[u.uid]:
            return False
        if r.get("pitch_bins", BINS) != bins:
            return False
        meta = dict(r["meta"])
        meta["phones"] = [tuple(p) for p in meta["phones"]]
        return Utterance(**meta) == u

    return {
        u.uid: stored[u.uid]
        for group in by_speaker.values()
        if all(same(u) for u in group)
        for u in group
    }


def load_items(path: str | Path) -> list[Item]:
    """Inverse of `extract`."""
    return load_features(path)[0]


def load_features(path: str | Path) -> tuple[list[Item], int]:
    """Inverse of `extract`: the items and the pitch levels of their codes (files written
    before the count was stored have `BINS`)."""
    records = torch.load(str(path), map_location="cpu", weights_only=True)
    bins = {int(r.get("pitch_bins", BINS)) for r in records}
    if len(bins) > 1:
        raise ValidationError(
            f"{path} mixes codes of {sorted(bins)} pitch levels; run 'dubstudio train features' "
            "again with one --pitch-bins."
        )
    out = []
    for r in records:
        meta = dict(r["meta"])
        meta["phones"] = [tuple(p) for p in meta["phones"]]
        out.append(
            Item(
                Utterance(**meta),
                r["mel"].float(),
                r["frame_labels"].long(),
                r["codes"].long(),
                r["style"].float(),
            )
        )
    return out, bins.pop() if bins else BINS
