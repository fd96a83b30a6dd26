"""Semantic codec (MaskGCT RepCodec): ConvNeXt encoder + factorised VQ over w2v-BERT features.

Dimension legend: B batch, T frames (50 Hz), D feature width (1024), V backbone width (384),
K codebook size (8192), E code width (8). Only `quantize` and `vq2emb` are used by IndexTTS-2;
the decoder is built so the official file (239 keys) loads strictly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dubstudio.engine import checkpoints
from dubstudio.engine.vocoders.weight_norm import fold_weight_norm, weight_norm_shapes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CodecConfig:
    """RepCodec dimensions (config.yaml `semantic_codec`)."""

    codebook_size: int = 8192
    hidden_size: int = 1024
    codebook_dim: int = 8
    vocos_dim: int = 384
    vocos_intermediate_dim: int = 2048
    vocos_num_layers: int = 12

    @classmethod
    def official(cls) -> CodecConfig:
        """amphion/MaskGCT `semantic_codec/model.safetensors`."""
        return cls()

    @classmethod
    def tiny(cls) -> CodecConfig:
        """A tiny codec of the same classes for tests."""
        return cls(
            codebook_size=32,
            hidden_size=24,
            codebook_dim=4,
            vocos_dim=16,
            vocos_intermediate_dim=32,
            vocos_num_layers=2,
        )


class ConvNeXtBlock(nn.Module):
    """Depthwise conv → LayerNorm → MLP (GELU) → layer scale, residual."""

    def __init__(self, dim: int, intermediate: int, layer_scale: float) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate)
        self.pwconv2 = nn.Linear(intermediate, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, V, T) -> (B, V, T)."""
        y = self.dwconv(x).transpose(1, 2)  # (B, V, T) -> (B, T, V)
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).transpose(1, 2)


class VocosBackbone(nn.Module):
    """Embedding conv, LayerNorm, ConvNeXt blocks, final LayerNorm; (B, D, T) -> (B, T, V)."""

    def __init__(self, in_dim: int, dim: int, intermediate: int, layers: int) -> None:
        super().__init__()
        self.embed = nn.Conv1d(in_dim, dim, 7, padding=3)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.convnext = nn.ModuleList(
            ConvNeXtBlock(dim, intermediate, 1.0 / layers) for _ in range(layers)
        )
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D, T) -> (B, T, V)."""
        x = self.norm(self.embed(x).transpose(1, 2)).transpose(1, 2)
        for block in self.convnext:
            x = block(x)
        return self.final_layer_norm(x.transpose(1, 2))


class FactorizedVectorQuantizer(nn.Module):
    """Project to E dims, pick the nearest code by cosine similarity, project back."""

    def __init__(self, dim: int, codebook_size: int, codebook_dim: int) -> None:
        super().__init__()
        self.in_project = nn.Conv1d(dim, codebook_dim, 1)
        self.out_project = nn.Conv1d(codebook_dim, dim, 1)
        self.codebook = nn.Embedding(codebook_size, codebook_dim)

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Nearest codes: x (B, D, T) -> (B, T) int64."""
        z = F.normalize(self.in_project(x).transpose(1, 2), dim=-1)  # (B, T, E)
        book = F.normalize(self.codebook.weight, dim=-1)  # (K, E)
        # For unit vectors the smallest squared distance is the largest dot product.
        return torch.matmul(z, book.T).argmax(dim=-1)

    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """Un-normalised codebook rows projected back: (B, T) -> (B, D, T)."""
        return self.out_project(self.codebook(codes).transpose(1, 2))


class _Quantizers(nn.Module):
    """Holder reproducing the official `quantizer.quantizers.0` nesting (one quantizer)."""

    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        self.quantizers = nn.ModuleList(
            [FactorizedVectorQuantizer(cfg.hidden_size, cfg.codebook_size, cfg.codebook_dim)]
        )


class RepCodec(nn.Module):
    """Semantic codec with official key names (weight norm folded into plain convolutions)."""

    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, v = cfg.hidden_size, cfg.vocos_dim

        def backbone() -> nn.Sequential:
            return nn.Sequential(
                VocosBackbone(d, v, cfg.vocos_intermediate_dim, cfg.vocos_num_layers),
                nn.Linear(v, d),
            )

        self.encoder = backbone()
        self.decoder = backbone()  # unused at inference; present in the official file
        self.quantizer = _Quantizers(cfg)

    @classmethod
    def from_config(cls, cfg: CodecConfig) -> RepCodec:
        """A randomly initialised codec in eval mode."""
        return cls(cfg).eval()

    @classmethod
    def from_state_dict(cls, cfg: CodecConfig, state: dict[str, torch.Tensor]) -> RepCodec:
        """Load the official (weight-norm) or folded key form strictly."""
        model = cls(cfg)
        checkpoints.load_strict(model, fold_weight_norm(state), component="semantic_codec")
        return model.eval()

    @classmethod
    def from_checkpoint(cls, path: str | Path, cfg: CodecConfig | None = None) -> RepCodec:
        """Load `semantic_codec_model.safetensors` (or a torch file) strictly."""
        return cls.from_state_dict(cfg or CodecConfig.official(), checkpoints.read_state_dict(path))

    @property
    def _vq(self) -> FactorizedVectorQuantizer:
        return self.quantizer.quantizers[0]  # type: ignore[return-value]

    @torch.inference_mode()
    def quantize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode and quantise features.

        Args:
            x: Normalised w2v-BERT layer-17 features (B, T, D).

        Returns:
            codes (B, T) int64 and their embeddings (B, T, D).
        """
        h = self.encoder(x.float().transpose(1, 2))  # (B, T, D) -> (B, D, T) -> (B, T, D)
        codes = self._vq.codes(h.transpose(1, 2))
        return codes, self._vq.embed(codes).transpose(1, 2)

    @torch.inference_mode()
    def vq2emb(self, codes: torch.Tensor) -> torch.Tensor:
        """Embed codes (correct for any batch size, unlike the official `unsqueeze(1)` call).

        Args:
            codes: (B, T) integer codes in [0, K).

        Returns:
            (B, T, D) content embeddings.
        """
        return self._vq.embed(codes.long()).transpose(1, 2)  # (B, D, T) -> (B, T, D)


def official_codec_shapes() -> dict[str, tuple[int, ...]]:
    """Official RepCodec keys (quantizer projections in weight-norm form) with shapes."""
    with torch.device("meta"):
        model = RepCodec(CodecConfig.official())
    prefixes = [f"quantizer.quantizers.0.{n}" for n in ("in_project", "out_project")]
    return weight_norm_shapes(checkpoints.module_shapes(model), prefixes)
