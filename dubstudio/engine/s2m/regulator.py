"""Continuous-mode length regulator: project content, stretch it to any frame count, refine.

Dimension legend: B batch, T content frames (semantic tokens), F mel frames, Dc content width,
C regulator channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dubstudio.engine.s2m.config import S2MConfig


class InterpolateRegulator(nn.Module):
    """Official `length_regulator` (continuous mode, no f0), keys `model.*`, `content_in_proj.*`.

    Stretching uses PyTorch nearest interpolation (source index floor(dst·T/F)), so any target
    frame count is exact — this is where a slot's mel-frame budget is applied.
    """

    def __init__(self, cfg: S2MConfig) -> None:
        super().__init__()
        ch = cfg.channels
        layers: list[nn.Module] = []
        for _ in range(cfg.regulator_blocks):
            layers += [nn.Conv1d(ch, ch, 3, 1, 1), nn.GroupNorm(1, ch), nn.Mish()]
        layers.append(nn.Conv1d(ch, ch, 1, 1))
        self.model = nn.Sequential(*layers)
        # Unused in continuous mode; present in the official checkpoint.
        self.embedding = nn.Embedding(cfg.regulator_codebook, ch)
        self.mask_token = nn.Parameter(torch.zeros(1, ch))
        self.content_in_proj = nn.Linear(cfg.content_dim, ch)

    def forward(
        self,
        content: torch.Tensor,
        frames: list[int],
        content_lens: list[int] | None = None,
    ) -> torch.Tensor:
        """Stretch content to per-item frame counts.

        Args:
            content: Semantic content (B, T, Dc).
            frames: Target mel frames per item (len B).
            content_lens: Valid content frames per item (len B); None means all T.

        Returns:
            (B, max(frames), C), zero past each item's frame count.
        """
        b, t, _ = content.shape
        lens = content_lens if content_lens is not None else [t] * b
        x = self.content_in_proj(content).transpose(1, 2)  # (B, T, C) -> (B, C, T)
        f_max = max(frames)
        if all(n == t for n in lens) and all(f == f_max for f in frames):
            x = F.interpolate(x, size=f_max, mode="nearest")
        else:
            # Each item is stretched from its own length to its own target, unlike the official
            # batch path (which stretches every item to the longest target).
            items = [
                F.pad(
                    F.interpolate(x[i : i + 1, :, : lens[i]], size=frames[i], mode="nearest"),
                    (0, f_max - frames[i]),
                )
                for i in range(b)
            ]
            x = torch.cat(items, dim=0)
        out = self.model(x).transpose(1, 2)  # (B, C, F) -> (B, F, C)
        mask = (
            torch.arange(f_max, device=out.device)[None, :]
            < torch.tensor(frames, device=out.device)[:, None]
        )
        return out * mask[:, :, None].to(out.dtype)
