"""GPT-2 decoder stack with the HF `GPT2Model` parameter names and a preallocated KV cache.

Dimension legend: N rows (batch x beams), S new positions, L cached + new positions, D width,
H heads, d_h = D / H. Weights of `c_attn`, `c_proj`, `c_fc` are stored [in, out] like HF's
`Conv1D`, so the official `gpt.h.*` tensors load unchanged. There is no token or position
embedding here (IndexTTS-2 deletes `wte` and zeroes `wpe`; `UnifiedVoice` adds its own tables).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Conv1D(nn.Module):
    """Affine map with the weight stored `(in, out)` (HF GPT-2 layout)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (*x.shape[:-1], self.weight.shape[1])
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(shape)


class KVCache:
    """Keys and values of every layer, `(layers, N, H, capacity, d_h)`, grown by doubling.

    `length` counts the positions written so far; all rows share it (left padding keeps rows
    aligned, padded slots are excluded through the key mask).
    """

    def __init__(self, layers: int, rows: int, heads: int, head_dim: int, capacity: int) -> None:
        self.shape = (layers, rows, heads, capacity, head_dim)
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.length = 0

    @property
    def capacity(self) -> int:
        return self.shape[3]

    def _ensure(self, needed: int, like: torch.Tensor) -> None:
        if self.k is None:
            capacity = max(self.capacity, needed)
            self.shape = (*self.shape[:3], capacity, self.shape[4])
            self.k = like.new_empty(self.shape)
            self.v = like.new_empty(self.shape)
            return
        if needed <= self.capacity:
            return
        assert self.v is not None
        capacity = max(needed, 2 * self.capacity)
        self.shape = (*self.shape[:3], capacity, self.shape[4])
        k, v = self.k.new_empty(self.shape), self.v.new_empty(self.shape)
        k[:, :, :, : self.length] = self.k[:, :, :, : self.length]
        v[:, :, :, : self.length] = self.v[:, :, :, : self.length]
        self.k, self.v = k, v

    def write(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v `(N, H, S, d_h)` after `length`; return all keys/values `(N, H, L, d_h)`."""
        end = self.length + k.shape[2]
        self._ensure(end, k)
        assert self.k is not None and self.v is not None
        self.k[layer, :, :, self.length : end] = k
        self.v[layer, :, :, self.length : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, steps: int) -> None:
        """Mark `steps` more positions as written (after every layer has written them)."""
        self.length += steps

    def reorder(self, rows: torch.Tensor, start: int = 0) -> None:
        """Beam search: row i takes the cache of row `rows[i]` from position `start` on.

        Positions before `start` must already be equal across the rows involved (the shared
        prompt of one line's beams), so only the generated part is copied, and only for rows
        whose source changed.
        """
        if self.k is None or self.v is None:
            return
        moved = (rows != torch.arange(rows.numel(), device=rows.device)).nonzero()[:, 0]
        if moved.numel() == 0:
            return
        src = rows[moved]
        n = self.length
        self.k[:, moved, :, start:n] = self.k[:, src, :, start:n]
        self.v[:, moved, :, start:n] = self.v[:, src, :, start:n]

    def repeat_rows(self, times: int) -> None:
        """Give every row `times` consecutive copies (one prompt prefilled for n beams)."""
        self.shape = (self.shape[0], self.shape[1] * times, *self.shape[2:])
        if self.k is not None and self.v is not None:
            self.k = self.k.repeat_interleave(times, dim=1)
            self.v = self.v.repeat_interleave(times, dim=1)


class GPT2Attention(nn.Module):
    """Causal multi-head self-attention (fused qkv projection)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.c_attn = Conv1D(dim, 3 * dim)
        self.c_proj = Conv1D(dim, dim)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        cache: KVCache | None,
        layer: int,
    ) -> torch.Tensor:
        """x `(N, S, D)`; mask `(N, 1, S, L)` bool or None (None = plain causal)."""
        n, s, d = x.shape
        q, k, v = self.c_attn(x).split(d, dim=2)
        q, k, v = (z.view(n, s, self.heads, -1).transpose(1, 2) for z in (q, k, v))
        if cache is not None:
            k, v = cache.write(layer, k, v)
        if mask is None:
            # Without padding: a lone query sees everything; a block of queries is causal
            # (only valid when the block starts at position 0, which the callers guarantee).
            out = F.scaled_dot_product_attention(q, k, v, is_causal=s > 1)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.c_proj(out.transpose(1, 2).reshape(n, s, d))


class GPT2MLP(nn.Module):
    """c_proj(gelu_tanh(c_fc x))."""

    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.c_fc = Conv1D(dim, inner)
        self.c_proj = Conv1D(inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class GPT2Block(nn.Module):
    """Pre-LayerNorm transformer block."""

    def __init__(self, dim: int, heads: int, inner: int, eps: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=eps)
        self.attn = GPT2Attention(dim, heads)
        self.ln_2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = GPT2MLP(dim, inner)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, cache: KVCache | None, layer: int
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), mask, cache, layer)
        return x + self.mlp(self.ln_2(x))


def build_attention_mask(
    key_valid: torch.Tensor | None, start: int, queries: int, device: torch.device
) -> torch.Tensor | None:
    """Boolean mask `(N, 1, S, L)` for queries at positions start..start+S-1 over keys 0..L-1.

    Keys are visible when causal and valid. Each query may always see itself, so a padded row
    never has an empty softmax (its output is garbage but no valid row attends to it).
    Returns None when no key is padded (plain causal attention suffices).
    """
    if key_valid is None:
        return None
    total = start + queries
    valid = key_valid[:, :total]
    if queries == 1:
        mask = valid.clone()
        mask[:, -1] = True
        return mask[:, None, None, :]
    q_pos = torch.arange(start, total, device=device)[:, None]
    k_pos = torch.arange(total, device=device)[None, :]
    causal = k_pos <= q_pos  # (S, L)
    mask = causal[None] & valid[:, None, :]
    mask = mask | (k_pos == q_pos)[None]
    return mask[:, None]


class GPT2Stack(nn.Module):
    """`gpt.h.*` blocks and `gpt.ln_f`; input embeddings come from the caller."""

    def __init__(self, dim: int, layers: int, heads: int, inner: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.h = nn.ModuleList(GPT2Block(dim, heads, inner, eps) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim, eps=eps)
        # HF initialises residual output projections with std 0.02 / sqrt(2 * layers).
        for block in self.h:
            for proj in (block.attn.c_proj, block.mlp.c_proj):  # type: ignore[union-attr]
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * layers))

    def new_cache(self, rows: int, capacity: int) -> KVCache:
        """An empty cache for `rows` sequences, grown on demand beyond `capacity` positions."""
        return KVCache(len(self.h), rows, self.heads, self.head_dim, capacity)

    def forward(
        self,
        x: torch.Tensor,
        *,
        key_valid: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Run the stack.

        Args:
            x: `(N, S, D)` input embeddings for positions [cache.length, cache.length + S)
                (or [0, S) without a cache).
            key_valid: `(N, >= L)` bool, False at padded positions; None when nothing is padded.
            cache: KV cache to read and extend, or None for a full causal pass.

        Returns:
            Hidden states after `ln_f`, `(N, S, D)`.
        """
        start = 0 if cache is None else cache.length
        mask = build_attention_mask(key_valid, start, x.shape[1], x.device)
        if mask is None and start > 0 and x.shape[1] > 1:
            # A block of queries after cached positions needs an explicit offset-causal mask.
            ones = torch.ones(x.shape[0], start + x.shape[1], dtype=torch.bool, device=x.device)
            mask = build_attention_mask(ones, start, x.shape[1], x.device)
        for i, block in enumerate(self.h):
            x = block(x, mask, cache, i)
        if cache is not None:
            cache.advance(x.shape[1])
        return self.ln_f(x)
