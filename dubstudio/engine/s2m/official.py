"""State-dict shapes of the official IndexTTS-2 S2M (`s2mel.pth`), built on the meta device."""

from __future__ import annotations

import torch

from dubstudio.engine.checkpoints import module_shapes
from dubstudio.engine.s2m.config import S2MConfig
from dubstudio.engine.s2m.model import S2MModel


def official_s2mel_shapes() -> dict[str, tuple[int, ...]]:
    """Keys ``<submodel>.<name>`` (cfm, length_regulator, gpt_layer) with their shapes."""
    with torch.device("meta"):
        model = S2MModel(S2MConfig.official())
    return module_shapes(model)
