"""CAM++ speaker-style encoder (3D-Speaker CAMPPlus; official key names incl. BatchNorm buffers).

Dimension legend: B batch, T fbank frames (100 Hz), F fbank bins (80), C channels, S style (192).
Input is the mean-normalised Kaldi fbank from `dubstudio.engine.audio.kaldi_fbank`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dubstudio.engine import checkpoints

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CAMPPlusConfig:
    """CAM++ dimensions (official: feat 80, embedding 192, growth 32, bn 4, init 128)."""

    feat_dim: int = 80
    embedding_size: int = 192
    growth_rate: int = 32
    bn_size: int = 4
    init_channels: int = 128
    head_channels: int = 32
    block_layers: tuple[int, int, int] = (12, 24, 16)
    block_kernels: tuple[int, int, int] = (3, 3, 3)
    block_dilations: tuple[int, int, int] = (1, 2, 2)

    @classmethod
    def official(cls) -> CAMPPlusConfig:
        """`campplus_cn_common.bin` (CAMPPlus(feat_dim=80, embedding_size=192))."""
        return cls()

    @classmethod
    def tiny(cls) -> CAMPPlusConfig:
        """A tiny encoder of the same classes for tests."""
        return cls(
            embedding_size=16,
            growth_rate=8,
            bn_size=2,
            init_channels=16,
            head_channels=4,
            block_layers=(2, 2, 2),
        )


def _bn_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict([("batchnorm", nn.BatchNorm1d(channels)), ("relu", nn.ReLU())])
    )


class BasicResBlock(nn.Module):
    """2-D residual block; stride applies to the frequency axis only."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=(stride, 1), bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, F, T) -> (B, C', F / stride, T)."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class FCM(nn.Module):
    """Front-end convolution module: 2-D ResNet over (frequency, time), then flatten frequency."""

    def __init__(self, feat_dim: int, m: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, m, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(m)
        self.layer1 = nn.Sequential(BasicResBlock(m, m, 2), BasicResBlock(m, m, 1))
        self.layer2 = nn.Sequential(BasicResBlock(m, m, 2), BasicResBlock(m, m, 1))
        self.conv2 = nn.Conv2d(m, m, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(m)
        self.out_channels = m * (feat_dim // 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, F, T) -> (B, m·F/8, T)."""
        x = F.relu(self.bn1(self.conv1(x[:, None])))
        x = self.layer2(self.layer1(x))
        x = F.relu(self.bn2(self.conv2(x)))
        b, c, f, t = x.shape
        return x.reshape(b, c * f, t)


class TDNNLayer(nn.Module):
    """Strided 1-D convolution followed by BatchNorm + ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.linear = nn.Conv1d(
            c_in, c_out, kernel, stride=stride, padding=(kernel - 1) // 2, bias=False
        )
        self.nonlinear = _bn_relu(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, T) -> (B, C_out, T / stride)."""
        return self.nonlinear(self.linear(x))


class CAMLayer(nn.Module):
    """Context-aware masking: a local conv gated by utterance- and segment-level context."""

    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.linear_local = nn.Conv1d(
            c_in,
            c_out,
            kernel,
            padding=(kernel - 1) // 2 * dilation,
            dilation=dilation,
            bias=False,
        )
        self.linear1 = nn.Conv1d(c_in, c_in // 2, 1)
        self.linear2 = nn.Conv1d(c_in // 2, c_out, 1)

    @staticmethod
    def _segment_mean(x: torch.Tensor, seg_len: int = 100) -> torch.Tensor:
        """Mean over 1-second segments, broadcast back to every frame: (B, C, T) -> (B, C, T)."""
        seg = F.avg_pool1d(x, kernel_size=seg_len, stride=seg_len, ceil_mode=True)
        return seg.repeat_interleave(seg_len, dim=-1)[..., : x.shape[-1]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, T) -> (B, C_out, T)."""
        y = self.linear_local(x)
        context = x.mean(-1, keepdim=True) + self._segment_mean(x)
        gate = torch.sigmoid(self.linear2(F.relu(self.linear1(context))))
        return y * gate


class CAMDenseTDNNLayer(nn.Module):
    """BN-ReLU-1x1 bottleneck then BN-ReLU-CAM; returns the new growth channels."""

    def __init__(
        self, c_in: int, growth: int, bn_channels: int, kernel: int, dilation: int
    ) -> None:
        super().__init__()
        self.nonlinear1 = _bn_relu(c_in)
        self.linear1 = nn.Conv1d(c_in, bn_channels, 1, bias=False)
        self.nonlinear2 = _bn_relu(bn_channels)
        self.cam_layer = CAMLayer(bn_channels, growth, kernel, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, T) -> (B, growth, T)."""
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))


class CAMDenseTDNNBlock(nn.Module):
    """Densely connected CAM layers named `tdnnd1..N`."""

    def __init__(
        self, layers: int, c_in: int, growth: int, bn_channels: int, kernel: int, dilation: int
    ) -> None:
        super().__init__()
        self.n_layers = layers
        for i in range(layers):
            self.add_module(
                f"tdnnd{i + 1}",
                CAMDenseTDNNLayer(c_in + i * growth, growth, bn_channels, kernel, dilation),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, T) -> (B, C_in + layers·growth, T)."""
        for i in range(self.n_layers):
            x = torch.cat([x, getattr(self, f"tdnnd{i + 1}")(x)], dim=1)
        return x


class TransitLayer(nn.Module):
    """BN-ReLU then a 1x1 conv halving the channels."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.nonlinear = _bn_relu(c_in)
        self.linear = nn.Conv1d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, T) -> (B, C_out, T)."""
        return self.linear(self.nonlinear(x))


class StatsPool(nn.Module):
    """Mean and (unbiased) standard deviation over time: (B, C, T) -> (B, 2C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, 2C)."""
        return torch.cat([x.mean(dim=-1), x.std(dim=-1, unbiased=True)], dim=-1)


class DenseLayer(nn.Module):
    """1x1 projection to the embedding and an affine-free BatchNorm."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.linear = nn.Conv1d(c_in, c_out, 1, bias=False)
        self.nonlinear = nn.Sequential(
            OrderedDict([("batchnorm", nn.BatchNorm1d(c_out, affine=False))])
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in) -> (B, C_out)."""
        return self.nonlinear(self.linear(x[:, :, None])[:, :, 0])


class CAMPPlus(nn.Module):
    """CAM++ speaker embedding network (official `CAMPPlus(feat_dim=80, embedding_size=192)`)."""

    def __init__(self, cfg: CAMPPlusConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.head = FCM(cfg.feat_dim, cfg.head_channels)
        channels = cfg.init_channels
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["tdnn"] = TDNNLayer(self.head.out_channels, channels, 5, stride=2)
        bn_channels = cfg.bn_size * cfg.growth_rate
        for i, (n, k, d) in enumerate(
            zip(cfg.block_layers, cfg.block_kernels, cfg.block_dilations, strict=True)
        ):
            layers[f"block{i + 1}"] = CAMDenseTDNNBlock(
                n, channels, cfg.growth_rate, bn_channels, k, d
            )
            channels += n * cfg.growth_rate
            layers[f"transit{i + 1}"] = TransitLayer(channels, channels // 2)
            channels //= 2
        layers["out_nonlinear"] = _bn_relu(channels)
        layers["stats"] = StatsPool()
        layers["dense"] = DenseLayer(channels * 2, cfg.embedding_size)
        self.xvector = nn.Sequential(layers)

    @classmethod
    def from_config(cls, cfg: CAMPPlusConfig) -> CAMPPlus:
        """A randomly initialised encoder in eval mode."""
        return cls(cfg).eval()

    @classmethod
    def from_checkpoint(cls, path: str | Path, cfg: CAMPPlusConfig | None = None) -> CAMPPlus:
        """Load `campplus_cn_common.bin` (or a safetensors copy) strictly."""
        model = cls(cfg or CAMPPlusConfig.official())
        checkpoints.load_strict(model, checkpoints.read_state_dict(path), component="campplus")
        return model.eval()

    @torch.inference_mode()
    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Speaker style.

        Args:
            feats: Mean-normalised fbank (B, T, F).

        Returns:
            (B, S) style embedding.
        """
        x = self.head(feats.float().transpose(1, 2))  # (B, T, F) -> (B, F, T)
        return self.xvector(x)


def official_campplus_shapes() -> dict[str, tuple[int, ...]]:
    """State-dict keys and shapes of the official CAMPPlus (BatchNorm buffers included)."""
    with torch.device("meta"):
        model = CAMPPlus(CAMPPlusConfig.official())
    return checkpoints.module_shapes(model)
