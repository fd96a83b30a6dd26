"""Vocoders: log-mel (B, 80, F) to waveform (B, F·hop) — BigVGAN v2 and HiFi-GAN V1."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from dubstudio.engine.audio import MelConfig


@runtime_checkable
class Vocoder(Protocol):
    """What the pipeline needs from a vocoder.

    Attributes:
        sample_rate: Output rate in Hz.
        hop_length: Samples per mel frame.
        mel_config: The log-mel convention its input must follow.
    """

    sample_rate: int
    hop_length: int
    mel_config: MelConfig

    def __call__(self, mel: torch.Tensor) -> torch.Tensor:
        """Vocode a natural-log mel (B, n_mels, F) into (B, F·hop_length) samples in [-1, 1]."""
        ...


class GraphVocoder(Vocoder, Protocol):
    """A torch vocoder whose un-guarded forward can be traced or autocast (BigVGAN, HiFiGAN)."""

    def vocode_graph(self, mel: torch.Tensor) -> torch.Tensor:
        """`__call__` without the inference-mode guard."""
        ...


__all__ = ["GraphVocoder", "Vocoder"]
