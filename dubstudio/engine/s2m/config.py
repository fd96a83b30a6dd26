"""Typed configuration of the S2M model (IndexTTS-2 `s2mel` section), official and tiny."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


def _find_multiple(n: int, k: int) -> int:
    return n if n % k == 0 else n + k - (n % k)


@dataclass(frozen=True)
class S2MConfig:
    """Dimensions of `S2MModel`.

    Attributes:
        content_dim: Width of the semantic content fed to the length regulator (official 1024).
        channels: Length-regulator output width = DiT content width (official 512).
        regulator_blocks: Conv/GroupNorm/Mish blocks in the regulator (official 4).
        regulator_codebook: Rows of the regulator's unused discrete embedding (official 2048).
        hidden: DiT width (official 512).
        heads: DiT attention heads (official 8).
        depth: DiT transformer layers (official 13).
        ffn_dim: SwiGLU width; None derives it like gpt-fast (1536 for hidden 512).
        dit_codebook: Rows of the DiT's unused discrete content embedding (official 1024).
        n_mels: Mel bands (80).
        style_dim: Speaker-style vector width (official 192, CAMPPlus).
        wavenet_hidden: WaveNet head width (official 512). The official graph only runs with
            wavenet_hidden == hidden; other widths work here, with `final_layer.adaLN_modulation`
            taking the DiT width.
        wavenet_layers: WaveNet layers (official 8).
        wavenet_kernel: WaveNet kernel size (official 5).
        wavenet_dropout: Dropout inside the WaveNet head during training (official 0.2).
        gpt_dim: Width of the T2S GPT latents fused by `gpt_layer` (official 1280); None builds
            no `gpt_layer`.
        gpt_hidden: Widths of the two hidden projections of `gpt_layer` (official 256, 128).
        block_size: Longest supported total frame count (prompt + generated; official 16384).
        class_dropout: Probability of dropping all conditions during training (official 0.1).
        rope_base: Rotary embedding base.
        norm_eps: RMSNorm epsilon.
        time_freq_dim: Sinusoidal time-embedding width (256).
    """

    content_dim: int = 1024
    channels: int = 512
    regulator_blocks: int = 4
    regulator_codebook: int = 2048
    hidden: int = 512
    heads: int = 8
    depth: int = 13
    ffn_dim: int | None = None
    dit_codebook: int = 1024
    n_mels: int = 80
    style_dim: int = 192
    wavenet_hidden: int = 512
    wavenet_layers: int = 8
    wavenet_kernel: int = 5
    wavenet_dropout: float = 0.2
    gpt_dim: int | None = 1280
    gpt_hidden: tuple[int, int] = field(default=(256, 128))
    block_size: int = 16384
    class_dropout: float = 0.1
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    time_freq_dim: int = 256

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        if (self.hidden // self.heads) % 2:
            raise ValueError("the attention head size must be even for rotary embeddings")
        object.__setattr__(self, "gpt_hidden", tuple(self.gpt_hidden))

    @property
    def ffn(self) -> int:
        """SwiGLU width (gpt-fast rule: 2/3 of 4·hidden rounded up to a multiple of 256)."""
        if self.ffn_dim is not None:
            return self.ffn_dim
        return _find_multiple(int(2 * 4 * self.hidden / 3), 256)

    @classmethod
    def official(cls) -> S2MConfig:
        """The IndexTTS-2 release configuration (`config.yaml`, section `s2mel`)."""
        return cls()

    @classmethod
    def tiny(cls, *, style_dim: int = 16, gpt_dim: int | None = 24) -> S2MConfig:
        """A few-thousand-parameter model of the same classes for tests."""
        return cls(
            content_dim=24,
            channels=32,
            regulator_blocks=2,
            regulator_codebook=8,
            hidden=32,
            heads=2,
            depth=3,
            ffn_dim=48,
            dit_codebook=8,
            n_mels=80,
            style_dim=style_dim,
            wavenet_hidden=32,
            wavenet_layers=2,
            gpt_dim=gpt_dim,
            gpt_hidden=(16, 16),
            block_size=4096,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (tuples become lists)."""
        data = asdict(self)
        data["gpt_hidden"] = list(self.gpt_hidden)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> S2MConfig:
        """Inverse of `to_dict`; unknown keys are an error so typos surface."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown S2M config keys: {', '.join(unknown)}")
        values = dict(data)
        if "gpt_hidden" in values:
            values["gpt_hidden"] = tuple(values["gpt_hidden"])
        return cls(**values)
