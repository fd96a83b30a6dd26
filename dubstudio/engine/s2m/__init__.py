"""Semantic-to-mel (S2M): length regulator, GPT-latent fusion and the flow-matching DiT decoder."""

from __future__ import annotations

from dubstudio.engine.s2m.config import S2MConfig
from dubstudio.engine.s2m.model import S2MModel

__all__ = ["S2MConfig", "S2MModel"]
