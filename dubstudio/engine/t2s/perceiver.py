"""Perceiver resampler: a fixed set of learned latents cross-attends to a variable-length context.

Dimension legend: B batch, T' context frames, C context width, N latents, D latent width,
H heads, d_h per-head width. Names follow the official checkpoint (`perceiver_encoder.*`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """x / ||x|| * sqrt(D) * gamma."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1) * self.scale * self.gamma


class GEGLU(nn.Module):
    """Split the last dim in (x, gate) and return gelu(gate) * x."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = x.chunk(2, dim=-1)
        return F.gelu(gate) * x


def perceiver_feed_forward(dim: int, mult: int) -> nn.Sequential:
    """Linear(D, 2I) -> GEGLU -> Linear(I, D) with I = int(D * mult * 2 / 3) (keys .0 and .2)."""
    inner = int(dim * mult * 2 / 3)
    return nn.Sequential(nn.Linear(dim, inner * 2), GEGLU(), nn.Linear(inner, dim))


class PerceiverAttention(nn.Module):
    """Latents attend to [latents ; context] (queries are included among the keys)."""

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads = heads
        inner = heads * dim_head
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(
        self, latents: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """latents `(B, N, D)`, context `(B, T', D)`, mask `(B, N + T')` bool or None."""
        b, n, _ = latents.shape
        kv_in = torch.cat([latents, context], dim=1)
        q = self.to_q(latents)
        k, v = self.to_kv(kv_in).chunk(2, dim=-1)
        q, k, v = (z.view(b, z.shape[1], self.heads, -1).transpose(1, 2) for z in (q, k, v))
        attn_mask = None if mask is None else mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, H, N, d_h)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class PerceiverResampler(nn.Module):
    """Two layers of [attention, GEGLU feed-forward] with residuals, then RMSNorm."""

    def __init__(
        self,
        dim: int,
        *,
        dim_context: int,
        num_latents: int,
        heads: int,
        dim_head: int,
        ff_mult: int,
        depth: int = 2,
    ) -> None:
        super().__init__()
        self.proj_context = nn.Linear(dim_context, dim) if dim_context != dim else nn.Identity()
        self.latents = nn.Parameter(torch.randn(num_latents, dim))
        nn.init.normal_(self.latents, std=0.02)
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [PerceiverAttention(dim, heads, dim_head), perceiver_feed_forward(dim, ff_mult)]
            )
            for _ in range(depth)
        )
        self.norm = RMSNorm(dim)

    def forward(self, context: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """context `(B, T', C)`, mask `(B, T')` (True = valid) or None -> latents `(B, N, D)`."""
        b = context.shape[0]
        x = self.proj_context(context)
        latents = self.latents.unsqueeze(0).expand(b, -1, -1)
        full_mask = None
        if mask is not None:
            keep = torch.ones(b, latents.shape[1], dtype=torch.bool, device=mask.device)
            full_mask = torch.cat([keep, mask], dim=1)
        for attn, ff in self.layers:  # type: ignore[misc]
            latents = attn(latents, x, full_mask) + latents
            latents = ff(latents) + latents
        return self.norm(latents)
