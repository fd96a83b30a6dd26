"""Building blocks of the S2M DiT: weight-normed layers, AdaLN-RMSNorm transformer, WaveNet head.

Dimension legend: B batch, T frames, D model width, H heads, Dh head width, C channels.
Parameter names follow the official IndexTTS-2 `s2mel.pth` so checkpoints load key by key.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _norm_except_dim0(v: torch.Tensor) -> torch.Tensor:
    """L2 norm over every dimension but the first, kept broadcastable: (O, ...) -> (O, 1, ...)."""
    dims = tuple(range(1, v.dim()))
    return v.norm(dim=dims, keepdim=True)


class WNLinear(nn.Module):
    """Linear layer with the legacy weight-norm parametrisation (`weight_g` (O, 1), `weight_v`).

    Kept as explicit parameters (not `torch.nn.utils.weight_norm`, which is deprecated) so the
    state-dict names match the official checkpoints and training still updates g and v.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        v = torch.empty(out_features, in_features)
        nn.init.kaiming_uniform_(v, a=math.sqrt(5))
        self.weight_g = nn.Parameter(_norm_except_dim0(v).detach().clone())
        self.weight_v = nn.Parameter(v)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    @property
    def weight(self) -> torch.Tensor:
        """The effective weight g·v/‖v‖, (O, I)."""
        return self.weight_g * self.weight_v / _norm_except_dim0(self.weight_v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., I) -> (..., O)."""
        return F.linear(x, self.weight, self.bias)


class WNConv1d(nn.Module):
    """Conv1d with legacy weight-norm parameters (`weight_g` (O, 1, 1), `weight_v` (O, I, K)).

    Padding is applied by the caller (the WaveNet head pads with reflection).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        v = torch.empty(out_channels, in_channels, kernel_size)
        nn.init.kaiming_uniform_(v, a=math.sqrt(5))
        self.weight_g = nn.Parameter(_norm_except_dim0(v).detach().clone())
        self.weight_v = nn.Parameter(v)
        self.bias = nn.Parameter(torch.zeros(out_channels))

    @property
    def weight(self) -> torch.Tensor:
        """The effective weight g·v/‖v‖, (O, I, K)."""
        return self.weight_g * self.weight_v / _norm_except_dim0(self.weight_v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, I, T) -> (B, O, T - K + 1)."""
        return F.conv1d(x, self.weight, self.bias)


class _NormConv(nn.Module):
    """Holder reproducing the official `conv.conv` nesting of the WaveNet convolutions."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = WNConv1d(in_channels, out_channels, kernel_size)


class SConv1d(nn.Module):
    """Non-causal 'same' conv with reflection padding (official `SConv1d`, keys `conv.conv.*`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = _NormConv(in_channels, out_channels, kernel_size)
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, I, T) -> (B, O, T)."""
        total = self.kernel_size - 1
        if total:
            left, right = total // 2, total - total // 2
            # Reflection needs more frames than the pad; very short inputs fall back to
            # replication (the official code would fail there).
            mode = "reflect" if x.shape[-1] > max(left, right) else "replicate"
            x = F.pad(x, (left, right), mode=mode)
        return self.conv.conv(x)


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned gain (computed in float32)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., D)."""
        xf = x.float()
        out = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return out.type_as(x) * self.weight


class AdaptiveLayerNorm(nn.Module):
    """RMSNorm whose gain and bias come from a condition: w(c)·norm(x) + b(c)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.project_layer = nn.Linear(dim, 2 * dim)
        self.norm = RMSNorm(dim, eps)
        self.dim = dim

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x (B, T, D), c (B, 1, D) -> (B, T, D)."""
        weight, bias = torch.split(self.project_layer(c), self.dim, dim=-1)
        return weight * self.norm(x) + bias


def rope_table(length: int, head_dim: int, base: float, device: torch.device) -> torch.Tensor:
    """Rotary cos/sin table for positions 0..length-1: (length, Dh/2, 2)."""
    freqs = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim))
    angles = torch.outer(torch.arange(length, device=device).float(), freqs)
    return torch.stack([angles.cos(), angles.sin()], dim=-1)


def apply_rope(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent dimension pairs: x (B, T, H, Dh), table (T, Dh/2, 2) -> (B, T, H, Dh)."""
    xs = x.float().reshape(*x.shape[:-1], -1, 2)
    cos = table[None, :, None, :, 0]
    sin = table[None, :, None, :, 1]
    out = torch.stack(
        [xs[..., 0] * cos - xs[..., 1] * sin, xs[..., 1] * cos + xs[..., 0] * sin], dim=-1
    )
    return out.flatten(3).type_as(x)


class Attention(nn.Module):
    """Multi-head self-attention with fused QKV and rotary positions (no biases)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.wqkv = nn.Linear(dim, 3 * dim, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)
        self.heads = heads
        self.head_dim = dim // heads

    def forward(
        self, x: torch.Tensor, rope: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """x (B, T, D), rope (T, Dh/2, 2), mask (B, 1, T, T) bool or None -> (B, T, D)."""
        b, t, d = x.shape
        q, k, v = self.wqkv(x).split(d, dim=-1)
        q = apply_rope(q.view(b, t, self.heads, self.head_dim), rope)
        k = apply_rope(k.view(b, t, self.heads, self.head_dim), rope)
        v = v.view(b, t, self.heads, self.head_dim)
        # (B, T, H, Dh) -> (B, H, T, Dh)
        q, k, v = (y.transpose(1, 2) for y in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.wo(y.transpose(1, 2).reshape(b, t, d))


class FeedForward(nn.Module):
    """SwiGLU feed-forward: w2(silu(w1 x) · w3 x)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, D)."""
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    """Pre-norm block with time-conditioned norms and an (optionally used) U-ViT skip input."""

    def __init__(self, dim: int, heads: int, ffn: int, eps: float) -> None:
        super().__init__()
        self.attention = Attention(dim, heads)
        self.feed_forward = FeedForward(dim, ffn)
        self.ffn_norm = AdaptiveLayerNorm(dim, eps)
        self.attention_norm = AdaptiveLayerNorm(dim, eps)
        self.skip_in_linear = nn.Linear(2 * dim, dim)

    def forward(
        self,
        x: torch.Tensor,
        c: torch.Tensor,
        rope: torch.Tensor,
        mask: torch.Tensor | None,
        skip: torch.Tensor | None,
    ) -> torch.Tensor:
        """x (B, T, D), c (B, 1, D) -> (B, T, D)."""
        if skip is not None:
            x = self.skip_in_linear(torch.cat([x, skip], dim=-1))
        h = x + self.attention(self.attention_norm(x, c), rope, mask)
        return h + self.feed_forward(self.ffn_norm(h, c))


class Transformer(nn.Module):
    """Stack of blocks with U-ViT skips: the first half emits, the second half receives (LIFO)."""

    def __init__(self, dim: int, heads: int, depth: int, ffn: int, eps: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TransformerBlock(dim, heads, ffn, eps) for _ in range(depth))
        self.norm = AdaptiveLayerNorm(dim, eps)
        self.emit = {i for i in range(depth) if i < depth // 2}
        self.receive = {i for i in range(depth) if i > depth // 2}

    def forward(
        self, x: torch.Tensor, c: torch.Tensor, rope: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """x (B, T, D), c (B, 1, D), rope (T, Dh/2, 2), mask (B, 1, T, T) or None -> (B, T, D)."""
        skips: list[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            skip = skips.pop() if i in self.receive and skips else None
            x = layer(x, c, rope, mask, skip)
            if i in self.emit:
                skips.append(x)
        return self.norm(x, c)


class TimestepEmbedder(nn.Module):
    """Sinusoidal embedding of t ∈ [0, 1] (scaled by 1000) followed by a two-layer MLP."""

    def __init__(self, dim: int, freq_dim: int = 256, scale: float = 1000.0) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        half = freq_dim // 2
        self.register_buffer(
            "freqs", torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        )
        self.scale = scale

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """t (B,) -> (B, D)."""
        args = self.scale * t[:, None].float() * self.freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class FinalLayer(nn.Module):
    """Affine-free LayerNorm modulated by the time embedding, then a weight-normed projection."""

    def __init__(self, dim: int, out_dim: int, cond_dim: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = WNLinear(dim, out_dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 2 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x (B, T, D), c (B, cond_dim) -> (B, T, out_dim)."""
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        x = self.norm_final(x) * (1 + scale[:, None]) + shift[:, None]
        return self.linear(x)


class WaveNet(nn.Module):
    """Non-causal gated WaveNet (VITS `WN`) conditioned globally on a time embedding."""

    def __init__(
        self, hidden: int, kernel_size: int, layers: int, gin: int, dropout: float
    ) -> None:
        super().__init__()
        self.hidden = hidden
        self.n_layers = layers
        self.cond_layer = SConv1d(gin, 2 * hidden * layers, 1)
        self.in_layers = nn.ModuleList(
            SConv1d(hidden, 2 * hidden, kernel_size) for _ in range(layers)
        )
        self.res_skip_layers = nn.ModuleList(
            SConv1d(hidden, 2 * hidden if i < layers - 1 else hidden, 1) for i in range(layers)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """x (B, C, T), x_mask (B, 1, T), g (B, gin, 1) -> (B, C, T)."""
        output = torch.zeros_like(x)
        g_all = self.cond_layer(g)
        h = self.hidden
        for i in range(self.n_layers):
            a = self.in_layers[i](x) + g_all[:, 2 * h * i : 2 * h * (i + 1)]
            acts = self.drop(torch.tanh(a[:, :h]) * torch.sigmoid(a[:, h:]))
            res_skip = self.res_skip_layers[i](acts)
            if i < self.n_layers - 1:
                x = (x + res_skip[:, :h]) * x_mask
                output = output + res_skip[:, h:]
            else:
                output = output + res_skip
        return output * x_mask
