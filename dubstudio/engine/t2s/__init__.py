"""Text-to-semantic GPT (IndexTTS-2 `UnifiedVoice`): conditioning, decoding, duration control.

Public API: `T2SConfig`, `UnifiedVoice` (`speaker_latents`, `emotion_vector`, `merge_emovec`,
`generate`, `decode`, `latents`, `forward_train`, `from_checkpoint`), `DecodeParams`,
`DecodeResult`, `EmotionMatrices`, `EmotionChange`, `EmotionLoudness`, `EmotionRange`,
`emotion_vector_from_weights`, `webui_adjust`, `fit_target`.
"""

from __future__ import annotations

from dubstudio.engine.t2s.config import ConformerConfig, T2SConfig
from dubstudio.engine.t2s.decoding import DecodeParams, DecodeResult
from dubstudio.engine.t2s.emotion import (
    OFFICIAL_EMO_NUM,
    EmotionChange,
    EmotionLoudness,
    EmotionMatrices,
    EmotionRange,
    emotion_vector_from_weights,
    webui_adjust,
)
from dubstudio.engine.t2s.model import TrainOutput, UnifiedVoice, fit_target

__all__ = [
    "OFFICIAL_EMO_NUM",
    "ConformerConfig",
    "DecodeParams",
    "DecodeResult",
    "EmotionChange",
    "EmotionLoudness",
    "EmotionMatrices",
    "EmotionRange",
    "T2SConfig",
    "TrainOutput",
    "UnifiedVoice",
    "emotion_vector_from_weights",
    "fit_target",
    "webui_adjust",
]
