"""Conformer conditioning encoder (IndexTTS-2 `conditioning_encoder` / `emo_conditioning_encoder`).

Dimension legend: B batch, T input frames (50 Hz), T' = floor((T - 1) / 2) frames after the
stride-2 subsampling, D_in input feature width, C encoder width, H heads, d_k = C / H.
Parameter names follow the official checkpoint (wenet lineage) so `gpt.pth` loads strictly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dubstudio.engine.t2s.config import ConformerConfig


def sinusoid_table(length: int, dim: int) -> torch.Tensor:
    """Standard sin/cos position table `(1, length, dim)` (even dims sin, odd dims cos)."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * -(math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div)
    return table.unsqueeze(0)


class RelPositionalEncoding(nn.Module):
    """Scales the input by sqrt(C) and returns the matching slice of the sinusoid table."""

    def __init__(self, dim: int, max_len: int) -> None:
        super().__init__()
        self.scale = math.sqrt(dim)
        # Persistent: the official checkpoint carries it (`embed.pos_enc.pe`).
        self.register_buffer("pe", sinusoid_table(max_len, dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x `(B, T', C)` -> (scaled x `(B, T', C)`, pos_emb `(1, T', C)`)."""
        if x.shape[1] > self.pe.shape[1]:
            raise ValueError(
                f"Conditioning clip too long: {x.shape[1]} frames after subsampling, the "
                f"position table holds {self.pe.shape[1]}. Use a shorter reference clip."
            )
        return x * self.scale, self.pe[:, : x.shape[1]]


class Conv2dSubsampling2(nn.Module):
    """Stride-2 2-D convolution over (time, feature), then a linear projection to C."""

    def __init__(self, in_dim: int, out_dim: int, max_len: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, out_dim, 3, 2), nn.ReLU())
        self.out = nn.Sequential(nn.Linear(out_dim * ((in_dim - 1) // 2), out_dim))
        self.pos_enc = RelPositionalEncoding(out_dim, max_len)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Subsample and project.

        x `(B, T, D_in)`, mask `(B, 1, T)` -> x `(B, T', C)`, pos `(1, T', C)`, mask `(B, 1, T')`
        with T' = floor((T - 1) / 2).
        """
        x = self.conv(x.unsqueeze(1))  # (B, 1, T, D_in) -> (B, C, T', F')
        b, c, t, f = x.shape
        x = self.out(x.transpose(1, 2).reshape(b, t, c * f))
        x, pos = self.pos_enc(x)
        return x, pos, mask[:, :, 2::2]


class RelPositionMultiHeadedAttention(nn.Module):
    """Self-attention with relative position bias terms (u, v); no relative shift (as official)."""

    def __init__(self, heads: int, dim: int) -> None:
        super().__init__()
        self.h = heads
        self.d_k = dim // heads
        self.linear_q = nn.Linear(dim, dim)
        self.linear_k = nn.Linear(dim, dim)
        self.linear_v = nn.Linear(dim, dim)
        self.linear_out = nn.Linear(dim, dim)
        self.linear_pos = nn.Linear(dim, dim, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(heads, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.zeros(heads, self.d_k))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)

    def forward(
        self, x: torch.Tensor, key_mask: torch.Tensor | None, pos_emb: torch.Tensor
    ) -> torch.Tensor:
        """x `(B, T', C)`, key_mask `(B, 1, T')` bool or None, pos_emb `(1, T', C)`."""
        b, t, _ = x.shape
        q = self.linear_q(x).view(b, t, self.h, self.d_k)
        k = self.linear_k(x).view(b, t, self.h, self.d_k).transpose(1, 2)
        v = self.linear_v(x).view(b, t, self.h, self.d_k).transpose(1, 2)
        p = self.linear_pos(pos_emb).view(1, -1, self.h, self.d_k).transpose(1, 2)
        q_u = (q + self.pos_bias_u).transpose(1, 2)  # (B, H, T', d_k)
        q_v = (q + self.pos_bias_v).transpose(1, 2)
        scores = (q_u @ k.transpose(-2, -1) + q_v @ p.transpose(-2, -1)) / math.sqrt(self.d_k)
        if key_mask is not None:
            blocked = ~key_mask.unsqueeze(1)  # (B, 1, 1, T')
            attn = torch.softmax(scores.masked_fill(blocked, float("-inf")), dim=-1)
            attn = attn.masked_fill(blocked, 0.0)
        else:
            attn = torch.softmax(scores, dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, t, self.h * self.d_k)
        return self.linear_out(out)


class ConvolutionModule(nn.Module):
    """Pointwise conv + GLU, depthwise conv, LayerNorm, SiLU, pointwise conv."""

    def __init__(self, dim: int, kernel_size: int) -> None:
        super().__init__()
        self.pointwise_conv1 = nn.Conv1d(dim, 2 * dim, 1)
        self.depthwise_conv = nn.Conv1d(
            dim, dim, kernel_size, padding=(kernel_size - 1) // 2, groups=dim
        )
        self.norm = nn.LayerNorm(dim)
        self.pointwise_conv2 = nn.Conv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None) -> torch.Tensor:
        """x `(B, T', C)`, pad_mask `(B, 1, T')` bool (True = valid) or None."""
        x = x.transpose(1, 2)  # (B, T', C) -> (B, C, T')
        if pad_mask is not None:
            x = x.masked_fill(~pad_mask, 0.0)
        x = F.glu(self.pointwise_conv1(x), dim=1)
        x = self.depthwise_conv(x)
        x = F.silu(self.norm(x.transpose(1, 2))).transpose(1, 2)
        x = self.pointwise_conv2(x)
        if pad_mask is not None:
            x = x.masked_fill(~pad_mask, 0.0)
        return x.transpose(1, 2)  # (B, C, T') -> (B, T', C)


class PositionwiseFeedForward(nn.Module):
    """w_2(SiLU(w_1 x))."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w_1 = nn.Linear(dim, hidden)
        self.w_2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(F.silu(self.w_1(x)))


class ConformerEncoderLayer(nn.Module):
    """Pre-norm conformer layer without macaron feed-forward: MHA, conv, FFN, final norm."""

    def __init__(self, dim: int, heads: int, hidden: int, kernel_size: int) -> None:
        super().__init__()
        self.self_attn = RelPositionMultiHeadedAttention(heads, dim)
        self.feed_forward = PositionwiseFeedForward(dim, hidden)
        self.conv_module = ConvolutionModule(dim, kernel_size)
        self.norm_ff = nn.LayerNorm(dim, eps=1e-5)
        self.norm_mha = nn.LayerNorm(dim, eps=1e-5)
        self.norm_conv = nn.LayerNorm(dim, eps=1e-5)
        self.norm_final = nn.LayerNorm(dim, eps=1e-5)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, pos_emb: torch.Tensor
    ) -> torch.Tensor:
        """x `(B, T', C)`, mask `(B, 1, T')` or None -> `(B, T', C)`."""
        x = x + self.self_attn(self.norm_mha(x), mask, pos_emb)
        x = x + self.conv_module(self.norm_conv(x), mask)
        x = x + self.feed_forward(self.norm_ff(x))
        return self.norm_final(x)


class ConformerEncoder(nn.Module):
    """Subsampling front-end, conformer layers and a final LayerNorm."""

    def __init__(self, in_dim: int, config: ConformerConfig) -> None:
        super().__init__()
        c = config
        self.embed = Conv2dSubsampling2(in_dim, c.output_size, c.pos_max_len)
        self.encoders = nn.ModuleList(
            ConformerEncoderLayer(c.output_size, c.attention_heads, c.linear_units, c.kernel_size)
            for _ in range(c.num_blocks)
        )
        self.after_norm = nn.LayerNorm(c.output_size, eps=1e-5)

    def forward(
        self, feats: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode conditioning features.

        Args:
            feats: `(B, T, D_in)` features; T >= 3.
            lengths: `(B,)` valid frames, or None for "no padding" (the official inference passes
                the feature width 1024 as the length, which masks nothing; None reproduces it).

        Returns:
            encoded `(B, T', C)` and valid mask `(B, 1, T')` (bool).
        """
        b, t, _ = feats.shape
        if t < 3:
            raise ValueError(f"Conditioning clip too short ({t} frames); it needs at least 3.")
        if lengths is None:
            frame_mask = torch.ones(b, 1, t, dtype=torch.bool, device=feats.device)
        else:
            frame_mask = (torch.arange(t, device=feats.device)[None, :] < lengths[:, None])[:, None]
        x, pos_emb, mask = self.embed(feats, frame_mask)
        attn_mask = None if lengths is None else mask
        for layer in self.encoders:
            x = layer(x, attn_mask, pos_emb)
        return self.after_norm(x), mask
