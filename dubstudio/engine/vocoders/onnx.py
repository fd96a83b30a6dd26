"""ONNX Runtime execution of a vocoder: the same graph, about 2–3× faster than eager on CPU.

Dimension legend: B batch, M mel bands, F mel frames, N samples (F·hop).
The torch module is exported once (optionally cached to a file) with dynamic batch and frame
axes; the runtime session then replaces the eager forward. Needs `onnxruntime` (and `onnx` for
the export), both in the `render` extra.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dubstudio.core.errors import ModelLoadError
from dubstudio.engine.audio import MelConfig
from dubstudio.engine.vocoders import GraphVocoder


class _Graph(nn.Module):
    """Wraps a vocoder's un-guarded forward so the exporter can trace it."""

    def __init__(self, vocoder: GraphVocoder) -> None:
        super().__init__()
        self.vocoder = vocoder

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.vocoder.vocode_graph(mel)


def export_onnx(vocoder: GraphVocoder, *, frames: int = 32) -> bytes:
    """Export ``vocoder`` to an ONNX model (dynamic batch and frame count).

    Args:
        vocoder: BigVGAN or HiFiGAN (any module with ``vocode_graph``).
        frames: Frame count of the example input used for tracing.

    Returns:
        The serialised ONNX model.
    """
    example = torch.zeros(1, vocoder.mel_config.n_mels, frames)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The legacy TorchScript exporter is deprecated in favour of dynamo export, which needs
        # extra packages; the legacy one handles these convolution-only graphs well.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Graph(vocoder).eval(),
            (example,),
            buffer,
            input_names=["mel"],
            output_names=["wave"],
            dynamic_axes={"mel": {0: "batch", 2: "frames"}, "wave": {0: "batch", 1: "samples"}},
            opset_version=17,
            dynamo=False,
        )
    return buffer.getvalue()


class OnnxVocoder:
    """A `Vocoder` running an exported graph with ONNX Runtime on the CPU.

    Args:
        model: Serialised ONNX model bytes or a path to an ``.onnx`` file.
        sample_rate: Output rate in Hz.
        hop_length: Samples per mel frame.
        mel_config: The log-mel convention of the input.
        threads: Intra-op threads (None: ONNX Runtime's default).
    """

    def __init__(
        self,
        model: bytes | str | Path,
        *,
        sample_rate: int,
        hop_length: int,
        mel_config: MelConfig,
        threads: int | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelLoadError(
                "The ONNX vocoder needs onnxruntime: pip install 'dubstudio[render]'"
            ) from exc
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            options.intra_op_num_threads = threads
        source: Any = str(model) if isinstance(model, str | Path) else model
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        self.sample_rate = sample_rate
        self.hop_length = hop_length
        self.mel_config = mel_config

    @classmethod
    def from_vocoder(
        cls,
        vocoder: GraphVocoder,
        *,
        cache_path: str | Path | None = None,
        threads: int | None = None,
    ) -> OnnxVocoder:
        """Export (or reuse ``cache_path`` when it exists) and open a session.

        The cache file is the caller's responsibility to key by the weights it came from.
        """
        if cache_path is not None and Path(cache_path).is_file():
            model: bytes | Path = Path(cache_path)
        else:
            model = export_onnx(vocoder)
            if cache_path is not None:
                Path(cache_path).parent.mkdir(parents=True, exist_ok=True)
                Path(cache_path).write_bytes(model)
        return cls(
            model,
            sample_rate=vocoder.sample_rate,
            hop_length=vocoder.hop_length,
            mel_config=vocoder.mel_config,
            threads=threads,
        )

    def __call__(self, mel: torch.Tensor) -> torch.Tensor:
        """Vocode a log-mel (B, M, F) into (B, F·hop) samples (CPU float32 tensor)."""
        array = mel.detach().float().cpu().contiguous().numpy()
        (wave,) = self.session.run(None, {"mel": array})
        return torch.from_numpy(wave)
