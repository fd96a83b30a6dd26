"""Typed configuration of the text-to-semantic GPT (`UnifiedVoice`) and its conditioners.

Dimension legend: D = model_dim (GPT width), D_in = cond_input_dim (conditioning feature width:
1024-d w2v-BERT features for IndexTTS-2, 80-d log-mel frames for the bundled small model),
C = conformer output width, N_lat = num_latents.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ConformerConfig:
    """A conformer conditioning encoder followed by its perceiver resampler.

    Attributes:
        output_size: Conformer width C.
        linear_units: Feed-forward inner width.
        attention_heads: Heads of the conformer self-attention; the perceiver uses the same count.
        num_blocks: Conformer layers.
        kernel_size: Depthwise convolution kernel of each conformer layer.
        pos_max_len: Rows of the sinusoidal relative-position buffer (a persistent checkpoint key).
        perceiver_mult: Perceiver feed-forward multiplier (inner = int(dim * mult * 2 / 3)).
    """

    output_size: int = 512
    linear_units: int = 2048
    attention_heads: int = 8
    num_blocks: int = 6
    kernel_size: int = 15
    pos_max_len: int = 5000
    perceiver_mult: int = 2


@dataclass(frozen=True)
class T2SConfig:
    """Hyper-parameters of `UnifiedVoice`; `official()` matches IndexTTS-2's `gpt.pth`.

    Attributes:
        cond_input_dim: Width D_in of the conditioning features fed to both conformers.
        model_dim: GPT width D.
        layers: GPT-2 blocks.
        heads: GPT-2 attention heads.
        inner_dim: GPT-2 MLP width (None: 4 * model_dim, the HF default).
        number_text_tokens: Text vocabulary; the embedding and head have one more row.
        number_mel_codes: Semantic vocabulary including start and stop ids.
        start_text_token / stop_text_token: Ids wrapped around every text sequence.
        start_mel_token / stop_mel_token: Ids that open and close every semantic sequence.
        max_text_tokens: Text position table has max_text_tokens + 2 rows.
        max_mel_tokens: Mel position table has max_mel_tokens + 3 rows; it also embeds duration
            targets (W_num = W_sem), so a budget T must satisfy T <= max_mel_tokens + 1.
        num_latents: Speaker latents N_lat produced by the speaker perceiver.
        speaker: Speaker conformer and perceiver sizes (perceiver dim = model_dim).
        emotion: Emotion conformer and perceiver sizes.
        emo_perceiver_dim: Width of the single emotion latent before `emovec_layer`.
        perceiver_dim_head: Per-head width of both perceivers' attention.
        layer_norm_eps: Epsilon of every LayerNorm in the GPT.
    """

    cond_input_dim: int = 1024
    model_dim: int = 1280
    layers: int = 24
    heads: int = 20
    inner_dim: int | None = None
    number_text_tokens: int = 12000
    number_mel_codes: int = 8194
    start_text_token: int = 0
    stop_text_token: int = 1
    start_mel_token: int = 8192
    stop_mel_token: int = 8193
    max_text_tokens: int = 600
    max_mel_tokens: int = 1815
    num_latents: int = 32
    speaker: ConformerConfig = field(default_factory=ConformerConfig)
    emotion: ConformerConfig = field(
        default_factory=lambda: ConformerConfig(
            output_size=512, linear_units=1024, attention_heads=4, num_blocks=4
        )
    )
    emo_perceiver_dim: int = 1024
    perceiver_dim_head: int = 64
    layer_norm_eps: float = 1e-5

    @property
    def mel_positions(self) -> int:
        """Rows of the mel position table (max_mel_tokens + 2 + max_conditioning_inputs)."""
        return self.max_mel_tokens + 3

    @property
    def text_positions(self) -> int:
        """Rows of the text position table."""
        return self.max_text_tokens + 2

    @property
    def max_budget(self) -> int:
        """Largest token count a duration-controlled request may ask for.

        The k-th generated code sits at mel position k + 2 and the stop token is predicted
        from the last code, so T codes need positions up to T + 1.
        """
        return self.mel_positions - 2

    @property
    def num_conds(self) -> int:
        """Conditioning positions before the text: speaker latents and two duration slots."""
        return self.num_latents + 2

    @classmethod
    def official(cls) -> T2SConfig:
        """IndexTTS-2 (config.yaml `gpt:` section, release 2.0)."""
        return cls()

    @classmethod
    def tiny(cls, *, cond_input_dim: int = 16) -> T2SConfig:
        """A few-thousand-parameter configuration of the same classes, for tests."""
        small = ConformerConfig(
            output_size=16,
            linear_units=32,
            attention_heads=2,
            num_blocks=1,
            kernel_size=3,
            pos_max_len=256,
            perceiver_mult=2,
        )
        return cls(
            cond_input_dim=cond_input_dim,
            model_dim=32,
            layers=2,
            heads=2,
            number_text_tokens=64,
            number_mel_codes=66,
            start_mel_token=64,
            stop_mel_token=65,
            max_text_tokens=64,
            max_mel_tokens=700,
            num_latents=4,
            speaker=small,
            emotion=small,
            emo_perceiver_dim=24,
            perceiver_dim_head=8,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (nested dataclasses become dicts)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> T2SConfig:
        """Inverse of `to_dict`; unknown keys raise TypeError so typos are not silently ignored."""
        values = dict(data)
        for key in ("speaker", "emotion"):
            if isinstance(values.get(key), dict):
                values[key] = ConformerConfig(**values[key])
        return cls(**values)
