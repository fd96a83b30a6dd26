"""BigVGAN v2 generator (nvidia `bigvgan_v2_22khz_80band_256x` compatible), inference only.

Dimension legend: B batch, M mel bands, F mel frames, C channels, N samples (F·hop).
Snake-beta activations run anti-aliased: 2× Kaiser-sinc upsampling, activation, low-pass and 2×
downsampling. Weight norm is folded at load; both official key forms are accepted.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dubstudio.core.errors import ModelLoadError
from dubstudio.engine import checkpoints
from dubstudio.engine.audio import MelConfig
from dubstudio.engine.vocoders.weight_norm import fold_weight_norm, weight_norm_shapes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BigVGANConfig:
    """Generator hyper-parameters (names as in the official config.json)."""

    num_mels: int = 80
    upsample_rates: tuple[int, ...] = (4, 4, 2, 2, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (8, 8, 4, 4, 4, 4)
    upsample_initial_channel: int = 1536
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    snake_logscale: bool = True
    use_tanh_at_final: bool = False
    use_bias_at_final: bool = False
    sampling_rate: int = 22050
    mel: MelConfig = field(default_factory=MelConfig.indextts2)

    @property
    def hop_length(self) -> int:
        """Samples per mel frame (product of the upsample rates)."""
        return math.prod(self.upsample_rates)

    @classmethod
    def official(cls) -> BigVGANConfig:
        """nvidia/bigvgan_v2_22khz_80band_256x."""
        return cls()

    @classmethod
    def tiny(cls) -> BigVGANConfig:
        """A tiny 256× generator of the same classes for tests."""
        return cls(
            upsample_rates=(8, 8, 4),
            upsample_kernel_sizes=(16, 16, 8),
            upsample_initial_channel=16,
            resblock_kernel_sizes=(3,),
            resblock_dilation_sizes=((1, 3),),
        )

    @classmethod
    def from_json(cls, path: str | Path) -> BigVGANConfig:
        """Read the official ``config.json`` (training-only keys are ignored)."""
        data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("resblock", "1") != "1" or data.get("activation", "snakebeta") != "snakebeta":
            raise ModelLoadError(
                f"{path}: only BigVGAN v2 with resblock '1' and snakebeta activations is supported."
            )
        fmax = data.get("fmax")
        return cls(
            num_mels=int(data["num_mels"]),
            upsample_rates=tuple(data["upsample_rates"]),
            upsample_kernel_sizes=tuple(data["upsample_kernel_sizes"]),
            upsample_initial_channel=int(data["upsample_initial_channel"]),
            resblock_kernel_sizes=tuple(data["resblock_kernel_sizes"]),
            resblock_dilation_sizes=tuple(tuple(d) for d in data["resblock_dilation_sizes"]),
            snake_logscale=bool(data.get("snake_logscale", True)),
            use_tanh_at_final=bool(data.get("use_tanh_at_final", True)),
            use_bias_at_final=bool(data.get("use_bias_at_final", True)),
            sampling_rate=int(data["sampling_rate"]),
            mel=MelConfig(
                sample_rate=int(data["sampling_rate"]),
                n_fft=int(data["n_fft"]),
                hop=int(data["hop_size"]),
                win=int(data["win_size"]),
                n_mels=int(data["num_mels"]),
                fmin=float(data.get("fmin", 0)),
                fmax=None if fmax is None else float(fmax),
            ),
        )


def kaiser_sinc_filter(cutoff: float, half_width: float, kernel_size: int) -> torch.Tensor:
    """Kaiser-windowed sinc low-pass filter, unit DC gain: (1, 1, kernel_size)."""
    half = kernel_size // 2
    delta_f = 4 * half_width
    attenuation = 2.285 * (half - 1) * math.pi * delta_f + 7.95
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(kernel_size, beta=beta, periodic=False)
    if kernel_size % 2 == 0:
        time = torch.arange(-half, half) + 0.5
    else:
        time = torch.arange(kernel_size) - half
    taps = 2 * cutoff * window * torch.sinc(2 * cutoff * time)
    return (taps / taps.sum()).view(1, 1, kernel_size)


class SnakeBeta(nn.Module):
    """x + 1/β · sin²(αx) with per-channel log-scale α, β (parameters `alpha`, `beta`)."""

    def __init__(self, channels: int, logscale: bool = True) -> None:
        super().__init__()
        init = torch.zeros(channels) if logscale else torch.ones(channels)
        self.alpha = nn.Parameter(init.clone())
        self.beta = nn.Parameter(init.clone())
        self.logscale = logscale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T)."""
        alpha = self.alpha[None, :, None]
        beta = self.beta[None, :, None]
        if self.logscale:
            alpha, beta = alpha.exp(), beta.exp()
        return x + (1.0 / (beta + 1e-9)) * torch.sin(x * alpha).pow(2)


class UpSample1d(nn.Module):
    """2× upsampling by zero-stuffing and Kaiser-sinc interpolation (buffer `filter`)."""

    def __init__(self, ratio: int = 2, kernel_size: int = 12) -> None:
        super().__init__()
        self.ratio = ratio
        self.pad = kernel_size // ratio - 1
        self.pad_left = self.pad * ratio + (kernel_size - ratio) // 2
        self.pad_right = self.pad * ratio + (kernel_size - ratio + 1) // 2
        self.register_buffer("filter", kaiser_sinc_filter(0.5 / ratio, 0.6 / ratio, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, ratio·T)."""
        b, c, t = x.shape
        # Channels folded into the batch: one (1, 1, K) filter for all, which exports to ONNX
        # with dynamic shapes (a per-channel expand of the filter does not).
        x = F.pad(x.reshape(b * c, 1, t), (self.pad, self.pad), mode="replicate")
        x = self.ratio * F.conv_transpose1d(x, self.filter, stride=self.ratio)
        return x[..., self.pad_left : -self.pad_right].reshape(b, c, -1)


class LowPassFilter1d(nn.Module):
    """Strided Kaiser-sinc low-pass (buffer `filter`)."""

    def __init__(self, stride: int = 2, kernel_size: int = 12) -> None:
        super().__init__()
        self.stride = stride
        self.pad_left = kernel_size // 2 - int(kernel_size % 2 == 0)
        self.pad_right = kernel_size // 2
        self.register_buffer("filter", kaiser_sinc_filter(0.5 / stride, 0.6 / stride, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T // stride)."""
        b, c, t = x.shape
        x = F.pad(x.reshape(b * c, 1, t), (self.pad_left, self.pad_right), mode="replicate")
        return F.conv1d(x, self.filter, stride=self.stride).reshape(b, c, -1)


class DownSample1d(nn.Module):
    """2× anti-aliased downsampling (keys `lowpass.filter`)."""

    def __init__(self, ratio: int = 2, kernel_size: int = 12) -> None:
        super().__init__()
        self.lowpass = LowPassFilter1d(ratio, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, 2T) -> (B, C, T)."""
        return self.lowpass(x)


class Activation1d(nn.Module):
    """Alias-free activation: upsample 2×, snake-beta, downsample 2×."""

    def __init__(self, channels: int, logscale: bool) -> None:
        super().__init__()
        self.act = SnakeBeta(channels, logscale)
        self.upsample = UpSample1d()
        self.downsample = DownSample1d()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T)."""
        return self.downsample(self.act(self.upsample(x)))


class AMPBlock1(nn.Module):
    """Anti-aliased multi-periodicity residual block: per dilation, act→conv(d)→act→conv(1)."""

    def __init__(
        self, channels: int, kernel_size: int, dilations: tuple[int, ...], logscale: bool
    ) -> None:
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
        self.activations = nn.ModuleList(
            Activation1d(channels, logscale) for _ in range(2 * len(dilations))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T)."""
        acts = list(self.activations)
        for c1, c2, a1, a2 in zip(self.convs1, self.convs2, acts[::2], acts[1::2], strict=True):
            x = x + c2(a2(c1(a1(x))))
        return x


class BigVGAN(nn.Module):
    """BigVGAN v2 generator with official parameter names (plain `weight` after folding)."""

    def __init__(self, cfg: BigVGANConfig) -> None:
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
            self.ups.append(
                nn.ModuleList([nn.ConvTranspose1d(c_in, c_out, k, u, padding=(k - u) // 2)])
            )
            for rk, rd in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes, strict=True):
                self.resblocks.append(AMPBlock1(c_out, rk, tuple(rd), cfg.snake_logscale))
        c_last = ch // 2 ** len(cfg.upsample_rates)
        self.activation_post = Activation1d(c_last, cfg.snake_logscale)
        self.conv_post = nn.Conv1d(c_last, 1, 7, 1, padding=3, bias=cfg.use_bias_at_final)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_config(cls, cfg: BigVGANConfig) -> BigVGAN:
        """A randomly initialised generator in eval mode."""
        return cls(cfg).eval()

    @classmethod
    def from_state_dict(cls, cfg: BigVGANConfig, state: dict[str, torch.Tensor]) -> BigVGAN:
        """Load either key form (weight-norm `weight_g/_v` or plain `weight`) strictly."""
        model = cls(cfg)
        checkpoints.load_strict(model, fold_weight_norm(state), component="bigvgan")
        return model.eval()

    @classmethod
    def from_checkpoint(cls, path: str | Path, cfg: BigVGANConfig | None = None) -> BigVGAN:
        """Load `bigvgan_generator.pt` (container ``generator``) or a flat safetensors file."""
        path = Path(path)
        container = None if path.suffix == ".safetensors" else "generator"
        try:
            state = checkpoints.read_state_dict(path, container=container)
        except ModelLoadError:
            if container is None:
                raise
            state = checkpoints.read_state_dict(path)
        return cls.from_state_dict(cfg or BigVGANConfig.official(), state)

    @classmethod
    def from_pretrained_dir(cls, directory: str | Path) -> BigVGAN:
        """Load the official download layout: ``config.json`` + ``bigvgan_generator.pt``."""
        directory = Path(directory)
        cfg_path = directory / "config.json"
        if not cfg_path.is_file():
            raise ModelLoadError(f"No BigVGAN config.json in {directory}.")
        return cls.from_checkpoint(
            directory / "bigvgan_generator.pt", BigVGANConfig.from_json(cfg_path)
        )

    # ------------------------------------------------------------------ inference
    @torch.inference_mode()
    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """Vocode.

        Args:
            mel: Natural-log mel (B, M, F).

        Returns:
            (B, F·hop) waveform in [-1, 1].
        """
        return self.vocode_graph(mel)

    def vocode_graph(self, mel: torch.Tensor) -> torch.Tensor:
        """`forward` without the inference-mode guard, for ONNX export and tracing."""
        x = self.conv_pre(mel.float())
        k = self.num_kernels
        for i, up in enumerate(self.ups):
            for layer in up:
                x = layer(x)
            x = sum(self.resblocks[i * k + j](x) for j in range(k)) / k  # type: ignore[assignment]
        x = self.conv_post(self.activation_post(x))
        x = torch.tanh(x) if self.cfg.use_tanh_at_final else x.clamp(-1.0, 1.0)
        return x[:, 0]


def _weight_normed_modules(model: BigVGAN) -> list[str]:
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv1d | nn.ConvTranspose1d)
    ]


def official_bigvgan_nown_shapes() -> dict[str, tuple[int, ...]]:
    """Official generator keys after ``remove_weight_norm()`` (plain ``weight``)."""
    with torch.device("meta"):
        model = BigVGAN(BigVGANConfig.official())
    return checkpoints.module_shapes(model)


def official_bigvgan_shapes() -> dict[str, tuple[int, ...]]:
    """Official generator keys as constructed (weight-norm ``weight_g``/``weight_v``)."""
    with torch.device("meta"):
        model = BigVGAN(BigVGANConfig.official())
    return weight_norm_shapes(checkpoints.module_shapes(model), _weight_normed_modules(model))
