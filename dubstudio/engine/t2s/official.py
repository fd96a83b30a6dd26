"""Official IndexTTS-2 GPT state-dict shapes, built on the meta device (no weights allocated)."""

from __future__ import annotations

import torch

from dubstudio.engine.checkpoints import module_shapes
from dubstudio.engine.t2s.config import T2SConfig
from dubstudio.engine.t2s.model import UnifiedVoice


def official_gpt_shapes() -> dict[str, tuple[int, ...]]:
    """Every key of the official `gpt.pth` with its shape (665 keys)."""
    with torch.device("meta"):
        model = UnifiedVoice(T2SConfig.official())
    return module_shapes(model)
