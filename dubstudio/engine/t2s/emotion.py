"""The eight-value emotion path: weights -> emotion-matrix rows nearest the speaker's style.

Dimension legend: D model width (1280 official), S style width (192, CAMPPlus), R = sum(emo_num)
matrix rows (73 official), K = 8 emotion classes in the order of `core.model.EMOTION_NAMES`
(happy, angry, sad, afraid, disgusted, melancholic, surprised, calm).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dubstudio.core.errors import ModelLoadError, ValidationError

#: Rows per emotion class in the official feat1.pt / feat2.pt (config.yaml `emo_num`).
OFFICIAL_EMO_NUM: tuple[int, ...] = (3, 17, 2, 8, 4, 5, 10, 24)

#: Per-class bias the official web UI multiplies the weights by (mode "vectors").
WEBUI_EMOTION_BIAS: tuple[float, ...] = (0.9375, 0.875, 1.0, 1.0, 0.9375, 0.9375, 0.6875, 0.5625)

#: Sum the official web UI and CLI cap the weights at.
WEBUI_EMOTION_SUM_CAP = 0.8


@dataclass(frozen=True)
class EmotionMatrices:
    """The bundle's emotion matrices.

    Attributes:
        spk_matrix: `(R, S)` style prototypes (feat1.pt), compared with the speaker style.
        emo_matrix: `(R, D)` emotion vectors (feat2.pt), mixed into the GPT emotion vector.
        emo_num: Rows per class; len 8, sum R.
    """

    spk_matrix: torch.Tensor
    emo_matrix: torch.Tensor
    emo_num: tuple[int, ...] = OFFICIAL_EMO_NUM

    def __post_init__(self) -> None:
        rows = sum(self.emo_num)
        if self.spk_matrix.shape[0] != rows or self.emo_matrix.shape[0] != rows:
            raise ModelLoadError(
                f"Emotion matrices have {self.spk_matrix.shape[0]} / {self.emo_matrix.shape[0]} "
                f"rows but emo_num {list(self.emo_num)} sums to {rows}; the bundle's feat1/feat2 "
                "files do not belong to its config."
            )

    def nearest_rows(self, style: torch.Tensor) -> list[int]:
        """Per class, the index (within the class) of the spk_matrix row most cosine-similar.

        Args:
            style: `(S,)` or `(1, S)` speaker style vector.
        """
        style = style.reshape(1, -1).to(self.spk_matrix)
        picks = []
        for block in torch.split(self.spk_matrix, list(self.emo_num), dim=0):
            picks.append(int(F.cosine_similarity(style, block, dim=-1).argmax()))
        return picks


def webui_adjust(weights: Sequence[float]) -> list[float]:
    """The official web UI's optional adjustment: per-class bias, then cap the sum at 0.8.

    Not applied by the official `infer` itself; offer it as an option ("gentler emotions").
    """
    if len(weights) != len(WEBUI_EMOTION_BIAS):
        raise ValidationError(f"An emotion vector has 8 values, got {len(weights)}.")
    biased = [w * b for w, b in zip(weights, WEBUI_EMOTION_BIAS, strict=True)]
    total = sum(biased)
    if total > WEBUI_EMOTION_SUM_CAP:
        biased = [w * WEBUI_EMOTION_SUM_CAP / total for w in biased]
    return biased


def mix_weights(weights: Sequence[float], alpha: float = 1.0) -> list[float]:
    """The weights `emotion_vector_from_weights` mixes the rows by: scaled by
    clamp(alpha, 0, 1) and truncated to 4 decimals when alpha != 1 (official)."""
    strength = min(max(float(alpha), 0.0), 1.0)
    if strength == 1.0:
        return [float(w) for w in weights]
    return [int(float(w) * strength * 10000) / 10000 for w in weights]


def emotion_vector_from_weights(
    weights: Sequence[float] | torch.Tensor,
    style: torch.Tensor,
    matrices: EmotionMatrices,
    base_emovec: torch.Tensor,
    alpha: float = 1.0,
    *,
    webui_bias: bool = False,
) -> torch.Tensor:
    """Turn eight emotion weights into the GPT emotion vector (ENGINE_SPEC section 2.4).

    emovec = sum_i w_i * emo_matrix_i[nearest_i] + (1 - sum_i w_i) * base_emovec, where the
    weights were scaled by clamp(alpha, 0, 1) and truncated to 4 decimals when alpha != 1.

    Args:
        weights: 8 values in the `EMOTION_NAMES` order.
        style: `(S,)` or `(1, S)` speaker style (CAMPPlus for the official model).
        matrices: The bundle's emotion matrices.
        base_emovec: `(D,)` or `(1, D)` emotion vector of the voice's own audio
            (`UnifiedVoice.emotion_vector`).
        alpha: Emotion strength.
        webui_bias: Apply `webui_adjust` first (off in the official inference path).

    Returns:
        `(D,)` emotion vector.
    """
    raw = weights.tolist() if isinstance(weights, torch.Tensor) else weights
    values = [float(w) for w in raw]
    if len(values) != len(matrices.emo_num):
        raise ValidationError(
            f"An emotion vector has {len(matrices.emo_num)} values, got {len(values)}."
        )
    if webui_bias:
        values = webui_adjust(values)
    values = mix_weights(values, alpha)
    picks = matrices.nearest_rows(style)
    blocks = torch.split(matrices.emo_matrix, list(matrices.emo_num), dim=0)
    base = base_emovec.reshape(-1)
    mixed = torch.zeros_like(base)
    for w, block, idx in zip(values, blocks, picks, strict=True):
        mixed = mixed + w * block[idx].to(base)
    return mixed + (1.0 - sum(values)) * base


@dataclass(frozen=True)
class EmotionChange:
    """How far one prosody measure of a line moves from the voice's own reading per emotion.

    Both parts are fitted on the training corpus, each utterance against the same voice
    reading the same sentence calmly:

    * ``per_style``: each emotion's change, mixed by the eight slider weights exactly as the
      emotion vector mixes the emotion-matrix rows (the voice's own share changes nothing);
    * ``weight``, ``bias``: a linear read-out of an emotion vector, for an emotion clip, whose
      change is the read-out of the merged vector less that of the voice's own (`of_clip`).

    Attributes:
        per_style: `(K,)` change per emotion class, `EMOTION_NAMES` order.
        weight: `(D,)` read-out weights.
        bias: Change added by the read-out.
    """

    per_style: torch.Tensor
    weight: torch.Tensor
    bias: float

    def of_weights(self, weights: Sequence[float]) -> float:
        """Change of a slider mix: ``sum_k w_k * per_style_k`` (the weights as mixed, see
        `mix_weights`)."""
        if len(weights) != self.per_style.numel():
            raise ValidationError(
                f"An emotion vector has {self.per_style.numel()} values, got {len(weights)}."
            )
        return float(
            sum(w * float(d) for w, d in zip(weights, self.per_style.tolist(), strict=True))
        )

    def of_clip(self, merged: torch.Tensor, own: torch.Tensor) -> float:
        """Change of an emotion clip's merged vector against the voice's own vector: the
        read-outs' difference, kept within the styles' range (``per_style``'s least and
        greatest), which is as far as the fit has seen."""
        change = self.read(merged) - self.read(own)
        return min(max(change, float(self.per_style.min())), float(self.per_style.max()))

    def read(self, emovec: torch.Tensor) -> float:
        """Linear read-out of a `(D,)` or `(1, D)` emotion vector."""
        vec = emovec.reshape(-1).float()
        if vec.shape != self.weight.shape:
            raise ValidationError(
                f"Emotion vector of width {vec.numel()} for a read-out of width "
                f"{self.weight.numel()}."
            )
        return float(vec @ self.weight.to(vec)) + self.bias


class EmotionLoudness(EmotionChange):
    """An emotion's level change in dB (`audio.mel_level_db`).

    The small model's semantic codes name a phone and a pitch level but no loudness, so its
    decoder guesses a line's level from the pitch it is given (a high, quiet style comes out
    loud); the pipeline sets each line's level from this instead.
    """


class EmotionRange(EmotionChange):
    """How much further an emotion's pitch range has to be moved than the decoder moves it, as
    a log ratio of log-F0 spreads: ``exp(change)`` is the `intonation.scale_pitch_range`
    factor.

    Three pitch levels per phone carry where a line's pitch sits better than how far it
    moves, so the decoder renders only part of each emotion's range change. ``per_style`` is
    what the corpus recordings change less what the model's own renders change (both against
    the same voice's calm reading); the read-out maps an emotion vector to that remainder.
    """
