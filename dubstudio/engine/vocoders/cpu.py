"""The fastest way this CPU runs a vocoder: bfloat16 autocast, ONNX Runtime, or eager float32.

Dimension legend: B batch, M mel bands, F mel frames, N samples (F·hop).
On CPUs that compute bfloat16 natively (AVX512-BF16 or AMX) HiFi-GAN runs about 1.4–1.5×
faster under bf16 autocast than under ONNX Runtime in float32, at a log-mel distance to the
float32 output far below what a listener hears (`benchmarks/bench_s2m_vocoder.py`
prints both). Elsewhere bf16 is emulated and slower, so ONNX Runtime is the choice; without
onnxruntime the eager float32 module is used as it is.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import torch

from dubstudio.engine.device import cpu_bf16_native
from dubstudio.engine.vocoders import GraphVocoder

log = logging.getLogger(__name__)

BACKENDS: tuple[str, ...] = ("auto", "bf16", "onnx", "eager")


class Bf16Vocoder:
    """A `Vocoder` running an eager CPU vocoder under bfloat16 autocast; output is float32.

    Args:
        vocoder: BigVGAN or HiFiGAN (any module with ``vocode_graph``), float32 weights.
    """

    def __init__(self, vocoder: GraphVocoder) -> None:
        self.vocoder = vocoder
        self.sample_rate = vocoder.sample_rate
        self.hop_length = vocoder.hop_length
        self.mel_config = vocoder.mel_config

    @torch.inference_mode()
    def __call__(self, mel: torch.Tensor) -> torch.Tensor:
        """Vocode a log-mel (B, M, F) into (B, F·hop) float32 samples."""
        with torch.autocast("cpu", dtype=torch.bfloat16):
            wave = self.vocoder.vocode_graph(mel.float())
        return wave.float()


def resolve_backend(backend: str) -> str:
    """``backend`` with ``auto`` replaced by this machine's choice (bf16 where native, else onnx).

    Raises:
        ValueError: ``backend`` is not one of `BACKENDS`.
    """
    if backend not in BACKENDS:
        raise ValueError(f"Unknown CPU vocoder backend '{backend}'; use one of {BACKENDS}.")
    if backend != "auto":
        return backend
    return "bf16" if cpu_bf16_native() else "onnx"


def accelerated(
    vocoder: Any,
    *,
    backend: str = "auto",
    cache_path: str | Path | None = None,
    threads: int | None = None,
) -> Any:
    """``vocoder`` in the CPU backend ``backend`` (see `resolve_backend`).

    GPU vocoders are returned unchanged (they are faster in PyTorch). The ONNX export takes a
    few seconds once; pass ``cache_path`` (keyed by the weights) to reuse the exported file.
    When onnxruntime is missing or the export fails, the eager module is returned.
    """
    device = next(iter(vocoder.parameters())).device if hasattr(vocoder, "parameters") else None
    if device is not None and device.type != "cpu":
        return vocoder
    chosen = resolve_backend(backend)
    if chosen == "bf16":
        return Bf16Vocoder(vocoder)
    if chosen == "eager":
        return vocoder
    if importlib.util.find_spec("onnxruntime") is None:
        log.info("onnxruntime is not installed; the vocoder runs in eager PyTorch")
        return vocoder
    from dubstudio.engine.vocoders.onnx import OnnxVocoder

    try:
        return OnnxVocoder.from_vocoder(vocoder, cache_path=cache_path, threads=threads)
    except Exception as exc:  # an export failure must never stop rendering
        log.warning("ONNX export of the vocoder failed (%s); using eager PyTorch", exc)
    return vocoder
