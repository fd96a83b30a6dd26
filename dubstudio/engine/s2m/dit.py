"""The CFM velocity estimator: a U-ViT DiT over [noisy mel | prompt mel | content | style] with a
WaveNet head (official IndexTTS-2 `cfm.estimator`).

Dimension legend: B batch, T frames (prompt + generated), M mel bands, C content width
(regulator channels), D DiT width, W WaveNet width, S style width.
"""

from __future__ import annotations

import torch
from torch import nn

from dubstudio.engine.s2m.config import S2MConfig
from dubstudio.engine.s2m.layers import (
    FinalLayer,
    TimestepEmbedder,
    Transformer,
    WaveNet,
    WNLinear,
    rope_table,
)


def sequence_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """Boolean mask of valid positions: lengths (B,) -> (B, max_len)."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class DiT(nn.Module):
    """Velocity estimator v(x_t, t | prompt, content, style)."""

    def __init__(self, cfg: S2MConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, w, m = cfg.hidden, cfg.wavenet_hidden, cfg.n_mels
        self.register_buffer("input_pos", torch.arange(cfg.block_size, dtype=torch.long))
        self.transformer = Transformer(d, cfg.heads, cfg.depth, cfg.ffn, cfg.norm_eps)
        # x_embedder, cond_embedder and content_mask_embedder are present in the official
        # checkpoint but unused by its continuous-content forward pass; kept for strict loading.
        self.x_embedder = WNLinear(m, d)
        self.cond_embedder = nn.Embedding(cfg.dit_codebook, d)
        self.content_mask_embedder = nn.Embedding(1, d)
        self.cond_projection = nn.Linear(cfg.channels, d)
        self.t_embedder = TimestepEmbedder(d, cfg.time_freq_dim)
        self.t_embedder2 = TimestepEmbedder(w, cfg.time_freq_dim)
        self.cond_x_merge_linear = nn.Linear(2 * m + d + cfg.style_dim, d)
        self.skip_linear = nn.Linear(d + m, d)
        self.conv1 = nn.Linear(d, w)
        self.wavenet = WaveNet(w, cfg.wavenet_kernel, cfg.wavenet_layers, w, cfg.wavenet_dropout)
        self.res_projection = nn.Linear(d, w)
        self.final_layer = FinalLayer(w, w, cond_dim=d)
        self.conv2 = nn.Conv1d(w, m, 1)
        self._rope: torch.Tensor | None = None

    def _rope_for(self, length: int, device: torch.device) -> torch.Tensor:
        if length > self.cfg.block_size:
            raise ValueError(
                f"{length} mel frames exceed the S2M limit of {self.cfg.block_size}; "
                "split the line or shorten the reference clip."
            )
        if self._rope is None or self._rope.shape[0] < length or self._rope.device != device:
            # Built as an ordinary tensor even under inference mode: a table first made by a
            # render would otherwise break a later style fit, which needs autograd through it.
            with torch.inference_mode(False):
                self._rope = rope_table(
                    max(length, 256), self.cfg.hidden // self.cfg.heads, self.cfg.rope_base,
                    device,
                )  # fmt: skip
        return self._rope[:length]

    def forward(
        self,
        x: torch.Tensor,
        prompt_x: torch.Tensor,
        x_lens: torch.Tensor,
        t: torch.Tensor,
        style: torch.Tensor,
        mu: torch.Tensor,
        *,
        class_dropout: bool = False,
    ) -> torch.Tensor:
        """Estimate the flow velocity.

        Args:
            x: Noisy mel (B, M, T).
            prompt_x: Prompt mel, zero outside the prompt region (B, M, T).
            x_lens: Valid frames per item (B,).
            t: Flow time in [0, 1] (B,).
            style: Speaker style (B, S).
            mu: Content condition from the length regulator (B, T, C).
            class_dropout: Training only: drop every condition of an item with probability
                `cfg.class_dropout` (teaches the unconditional branch used by CFG).

        Returns:
            Velocity (B, M, T).
        """
        b, m, t_len = x.shape
        t1 = self.t_embedder(t)  # (B, D)
        c = self.cond_projection(mu)  # (B, T, D)
        x_t = x.transpose(1, 2)  # (B, M, T) -> (B, T, M)
        x_in = torch.cat(
            [
                x_t,
                prompt_x.transpose(1, 2),
                c,
                style[:, None, :].expand(b, t_len, style.shape[-1]),
            ],
            dim=-1,
        )
        if class_dropout and self.cfg.class_dropout > 0:
            drop = torch.rand(b, device=x.device) < self.cfg.class_dropout
            keep = torch.ones_like(x_in)
            keep[drop, :, m:] = 0
            x_in = x_in * keep
        x_in = self.cond_x_merge_linear(x_in)
        valid = sequence_mask(x_lens, t_len)  # (B, T)
        # No mask when every item is full length: SDPA then picks its fused kernels.
        attn_mask = (
            None if bool(valid.all()) else valid[:, None, None, :].expand(b, 1, t_len, t_len)
        )
        h = self.transformer(x_in, t1[:, None, :], self._rope_for(t_len, x.device), attn_mask)
        h = self.skip_linear(torch.cat([h, x_t], dim=-1))
        y = self.conv1(h).transpose(1, 2)  # (B, T, W) -> (B, W, T)
        t2 = self.t_embedder2(t)
        x_mask = valid[:, None, :].to(y.dtype)
        y = self.wavenet(y, x_mask, t2[:, :, None]).transpose(1, 2) + self.res_projection(h)
        y = self.final_layer(y, t1).transpose(1, 2)  # (B, T, W) -> (B, W, T)
        return self.conv2(y)
