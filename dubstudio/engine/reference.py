"""Reference encoding: a voice clip -> the features every later stage conditions on.

Dimension legend: T conditioning frames (50 Hz w2v-BERT frames officially), D_in their width
(1024 official), T_tok prompt semantic frames, D_c content width (1024 official), M mel bands,
F_ref reference mel frames, S style width (192 CAMPPlus official).

A bundle kind brings its own `ReferenceEncoder` (the official one below: w2v-BERT → semantic
codec → CAMPPlus; the bundled small model's lives in `dubstudio.engine.small`) and its own
`CodeEmbedder` (semantic codes → S2M content).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from dubstudio.core.errors import ValidationError
from dubstudio.engine.audio import resample

log = logging.getLogger(__name__)

#: The official pipeline truncates reference clips to 15 s (ENGINE_SPEC §2.1).
MAX_REFERENCE_SECONDS = 15.0


@dataclass(frozen=True)
class ReferenceFeatures:
    """Everything derived from one reference clip.

    Attributes:
        cond_feats: (1, T, D_in) features for the T2S speaker and emotion conditioners.
        prompt_content: (1, T_tok, D_c) semantic content of the clip for the S2M prompt.
        ref_mel: (1, M, F_ref) log-mel of the clip in the bundle's mel convention.
        style: (1, S) speaker style vector.
        emo_feats: (1, T', D_in) features for the emotion conditioner when they differ from
            ``cond_feats`` (the official model computes them from a 16 kHz load of the file);
            None means use ``cond_feats``.
    """

    cond_feats: torch.Tensor
    prompt_content: torch.Tensor
    ref_mel: torch.Tensor
    style: torch.Tensor
    emo_feats: torch.Tensor | None = None

    @property
    def emotion_feats(self) -> torch.Tensor:
        """Features for the emotion conditioner, (1, T', D_in)."""
        return self.cond_feats if self.emo_feats is None else self.emo_feats

    def to(self, device: torch.device) -> ReferenceFeatures:
        """The same features on ``device``."""
        return ReferenceFeatures(
            self.cond_feats.to(device),
            self.prompt_content.to(device),
            self.ref_mel.to(device),
            self.style.to(device),
            None if self.emo_feats is None else self.emo_feats.to(device),
        )


@runtime_checkable
class ReferenceEncoder(Protocol):
    """Turns a reference clip into `ReferenceFeatures`."""

    def encode(self, audio: np.ndarray, sample_rate: int) -> ReferenceFeatures:
        """Encode float32 mono samples (N,) at ``sample_rate`` (already trimmed and capped)."""
        ...


@runtime_checkable
class CodeEmbedder(Protocol):
    """Semantic codes -> S2M content."""

    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, T) int64 -> content (B, T, D_c)."""
        ...


def load_reference(
    path: str | Path,
    trim_start_s: float = 0.0,
    trim_end_s: float | None = None,
    *,
    max_seconds: float = MAX_REFERENCE_SECONDS,
) -> tuple[np.ndarray, int]:
    """Read a reference clip as float32 mono, apply its trim and the length cap.

    Returns:
        (samples (N,), sample_rate).
    """
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise ValidationError(f"Cannot read the voice clip {path}: {exc}") from exc
    audio = data.mean(axis=1)
    start = round(trim_start_s * rate)
    end = len(audio) if trim_end_s is None else min(len(audio), round(trim_end_s * rate))
    audio = audio[start:end]
    cap = int(max_seconds * rate)
    if len(audio) > cap:
        log.info("reference %s cut to %.0f s (the model's limit)", path, max_seconds)
        audio = audio[:cap]
    if len(audio) < rate // 10:
        raise ValidationError(
            f"The voice clip {path} has less than 0.1 s of audio after trimming; pick a longer "
            "region."
        )
    return np.ascontiguousarray(audio), int(rate)


class OfficialReferenceEncoder:
    """IndexTTS-2 reference path (ENGINE_SPEC §2.1–2.3).

    w2v-BERT 2.0 layer-17 features (normalised with the bundle's stats) for the conditioners;
    their semantic-codec quantisation as the S2M prompt content; the 22.05 kHz reference mel;
    CAMPPlus style on the mean-normalised Kaldi fbank of the 16 kHz audio.

    Args:
        semantic: Callable (1, N16) 16 kHz audio -> (1, T, 1024) normalised features.
        codec: The semantic codec (``quantize(x (B,T,1024)) -> (codes, quantized)``).
        style_encoder: Callable (1, N16) -> (1, 192).
        mel_fn: Callable (1, N22) -> (1, 80, F_ref).
        mel_rate: Sample rate of ``mel_fn`` (22050).
    """

    def __init__(
        self,
        semantic: Any,
        codec: Any,
        style_encoder: Any,
        mel_fn: Any,
        mel_rate: int = 22050,
        device: torch.device | None = None,
    ) -> None:
        self.semantic = semantic
        self.codec = codec
        self.style_encoder = style_encoder
        self.mel_fn = mel_fn
        self.mel_rate = mel_rate
        self.device = device or torch.device("cpu")

    @torch.inference_mode()
    def encode(self, audio: np.ndarray, sample_rate: int) -> ReferenceFeatures:
        """See `ReferenceEncoder.encode`."""
        wav = torch.from_numpy(audio).float().unsqueeze(0)  # (1, N)
        # The official path loads at 22.05 kHz first and derives 16 kHz from that.
        wav22 = resample(wav, sample_rate, self.mel_rate)
        wav16 = resample(wav22, self.mel_rate, 16000).to(self.device)
        feats = self.semantic(wav16)  # (1, T, 1024)
        _, quantized = self.codec.quantize(feats)  # (1, T, 1024)
        ref_mel = self.mel_fn(wav22.to(self.device))  # (1, 80, F_ref)
        style = self.style_encoder(wav16)  # (1, 192)
        # The official emotion features come from a direct 16 kHz load of the file; resampling
        # the same samples again gives features within resampling noise of those.
        return ReferenceFeatures(feats, quantized, ref_mel, style)
