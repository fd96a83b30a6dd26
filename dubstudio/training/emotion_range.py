"""Fitting the emotion range (`t2s.emotion.EmotionRange`) of a small bundle.

An emotion's pitch range is measured by a line's log-F0 spread: the 90th less the 10th
percentile of the log-F0 of its voiced frames (the YIN tracker the codes are made with, 10 ms
hop at 16 kHz). Its change is the log ratio of that spread to the spread of the same voice
reading the same sentence calmly, so ``exp(change)`` is the factor
`intonation.scale_pitch_range` applies. Two sides are measured:

* the corpus: the training recordings of the voices whose engine carries the recipes' range
  (`carries_range`), each style against the calm reading;
* the model: renders of training sentences by each training voice, each style at weight 1
  against calm at the same exact budget, with the range stage off.

``per_style`` is the first less the second, so the stage adds what the decoder leaves out
and nothing where it already follows the recipe; the clip read-out is a ridge regression from
an utterance's emotion vector to its own change less the model's change for its style.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dubstudio.core.errors import ValidationError
from dubstudio.core.fsutil import atomic_write_bytes, atomic_write_text
from dubstudio.core.model import EMOTION_NAMES
from dubstudio.engine.analysis import pitch_track
from dubstudio.engine.audio import resample
from dubstudio.training.corpus import PITCH_BY_RESYNTHESIS, RANGE_BY_RESYNTHESIS
from dubstudio.training.features import Item
from dubstudio.training.recipes import fit_readout

log = logging.getLogger(__name__)

#: Voiced frames a line needs for its spread to count.
MIN_VOICED = 10


def log_spread(audio: np.ndarray, rate: int) -> float | None:
    """p90 - p10 of the log-F0 of ``audio``'s voiced frames, or None with under `MIN_VOICED`
    (or a spread too flat to compare with)."""
    wave = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    if rate != 16000:
        wave = resample(wave, rate, 16000)
    f0 = pitch_track(wave.numpy(), 16000, 160).numpy()
    voiced = np.log(f0[f0 > 0])
    if voiced.size < MIN_VOICED:
        return None
    p10, p90 = np.percentile(voiced, [10, 90])
    return float(p90 - p10) if p90 - p10 > 1e-3 else None


def carries_range(voice: str, range_for_every_engine: bool) -> bool:
    """Whether the corpus gave ``voice``'s styles their recipe's pitch range (its engine has a
    range control, or the range was put in by resynthesis)."""
    return (
        voice in PITCH_BY_RESYNTHESIS or range_for_every_engine or voice not in RANGE_BY_RESYNTHESIS
    )


def recorded_changes(
    items: Sequence[Item],
    corpus: Path,
    *,
    range_for_every_engine: bool = False,
    per_cell: int = 24,
    seed: int = 0,
) -> list[tuple[int, float]]:
    """(item index, log ratio of its log-F0 spread to the calm reading's) for up to ``per_cell``
    training utterances per (voice, style) of the voices that carry the range, each with a
    calm reading of its sentence by the same voice at the same timbre shift; calm utterances
    are drawn as one more style (change 0 by definition, for the read-out)."""
    calm = {
        (it.utt.voice, it.utt.text, it.utt.shift): i
        for i, it in enumerate(items)
        if it.utt.style == "calm" and it.utt.split == "train"
    }
    cells: dict[tuple[str, str], list[int]] = {}
    for i, it in enumerate(items):
        u = it.utt
        if u.split != "train" or not carries_range(u.voice, range_for_every_engine):
            continue
        if (u.voice, u.text, u.shift) in calm:
            cells.setdefault((u.voice, u.style), []).append(i)
    rng = random.Random(seed)
    spreads: dict[int, float | None] = {}

    def spread(i: int) -> float | None:
        if i not in spreads:
            import soundfile as sf

            audio, rate = sf.read(str(corpus / items[i].utt.wav), dtype="float32")
            spreads[i] = log_spread(audio, rate)
        return spreads[i]

    out: list[tuple[int, float]] = []
    for key in sorted(cells):
        chosen = cells[key] if len(cells[key]) <= per_cell else rng.sample(cells[key], per_cell)
        for i in chosen:
            u = items[i].utt
            own, ref = spread(i), spread(calm[(u.voice, u.text, u.shift)])
            if own is not None and ref is not None:
                out.append((i, 0.0 if u.style == "calm" else math.log(own / ref)))
    return out


def rendered_changes(
    synth: Any,
    lines: Sequence[tuple[Path, str, float]],
    *,
    seed: int = 0,
    on_progress: Callable[[float, str], None] | None = None,
) -> dict[str, list[float]]:
    """Per style, the log ratio of the log-F0 spread of each line rendered at weight 1 to the
    same line's rendered calm, at the same exact budget and seed.

    Args:
        synth: A `pipeline.Synthesizer` (its emotion range should be off).
        lines: (reference clip, text, seconds) per line.
        seed: T2S seed of every render.
        on_progress: ``(fraction, stage)`` callback.
    """
    from dubstudio.engine.api import EmotionRequest, SynthesisRequest, VoiceRef

    rate = 22050
    out: dict[str, list[float]] = {name: [] for name in EMOTION_NAMES}
    for n, (ref, text, seconds) in enumerate(lines):
        spreads: dict[str, float | None] = {}
        for k, name in enumerate(EMOTION_NAMES):
            vec = tuple(1.0 if i == k else 0.0 for i in range(len(EMOTION_NAMES)))
            result = synth.synthesize(
                SynthesisRequest(
                    text=text,
                    voice=VoiceRef(str(ref)),
                    emotion=EmotionRequest(mode="vector", vector=vec),
                    sample_rate=rate,
                    target_samples=round(seconds * rate),
                    duration_mode="exact",
                    seed=seed,
                )
            )
            spreads[name] = log_spread(result.audio, rate)
        calm = spreads["calm"]
        for name, value in spreads.items():
            if calm is not None and value is not None:
                out[name].append(math.log(value / calm))
        if on_progress is not None:
            on_progress((n + 1) / len(lines), "range renders")
    return out


@dataclass
class RangeFit:
    """A fitted `t2s.emotion.EmotionRange` and what it was fitted from.

    Attributes:
        style_log: `(K,)` corpus change less the model's, per style (`EMOTION_NAMES` order).
        weight: `(D,)` read-out weights.
        bias: Read-out bias.
        recorded: `(K,)` mean change (log spread ratio) of the corpus recordings per style.
        rendered: `(K,)` mean change of the model's renders per style.
        recordings: Utterances the corpus side was measured on.
        renders: Lines the model side was rendered for (8 renders each).
    """

    style_log: torch.Tensor
    weight: torch.Tensor
    bias: float
    recorded: torch.Tensor
    rendered: torch.Tensor
    recordings: int
    renders: int

    def lines(self) -> list[str]:
        """One line per style: ``name  corpus - model = added``."""
        return [
            f"{name:12s} {rec:+.3f} - {ren:+.3f} = {add:+.3f}"
            for name, rec, ren, add in zip(
                EMOTION_NAMES,
                self.recorded.tolist(),
                self.rendered.tolist(),
                self.style_log.tolist(),
                strict=True,
            )
        ]


def fit_emotion_range(
    t2s: Any,
    items: Sequence[Item],
    recorded: Sequence[tuple[int, float]],
    rendered: dict[str, list[float]],
    *,
    ridge: float = 0.1,
) -> RangeFit:
    """Fit the emotion range from measured changes (`recorded_changes`, `rendered_changes`).

    A style missing on either side gets 0 (left as the decoder renders it)."""
    k = len(EMOTION_NAMES)
    rec_mean, ren_mean = torch.zeros(k), torch.zeros(k)
    for s, name in enumerate(EMOTION_NAMES):
        own = [c for i, c in recorded if items[i].utt.style == name]
        drawn = rendered.get(name, [])
        if name != "calm" and own and drawn:
            rec_mean[s] = sum(own) / len(own)
            ren_mean[s] = sum(drawn) / len(drawn)
    style_log = rec_mean - ren_mean
    idx = [i for i, _ in recorded]
    targets = [
        change - float(ren_mean[EMOTION_NAMES.index(items[i].utt.style)])
        if items[i].utt.style != "calm"
        else 0.0
        for i, change in recorded
    ]
    weight, bias = fit_readout(t2s, items, idx, targets, ridge=ridge)
    lines = max((len(v) for v in rendered.values()), default=0)
    return RangeFit(style_log, weight, bias, rec_mean, ren_mean, len(recorded), lines)


def training_lines(
    items: Sequence[Item], corpus: Path, *, per_voice: int = 3, seed: int = 0
) -> list[tuple[Path, str, float]]:
    """(reference clip, text, seconds) for up to ``per_voice`` training sentences of every
    training voice: each voice's reference is one of its calm training recordings (unshifted
    ones first), and each line's budget is the length of that voice's calm reading of the
    sentence. A voice with fewer than two calm recordings is left out.

    Raises:
        ValidationError: No voice has two calm training recordings.
    """
    rng = random.Random(seed)
    out: list[tuple[Path, str, float]] = []
    for voice in sorted({it.utt.voice for it in items if it.utt.split == "train"}):
        calm = [
            it.utt
            for it in items
            if it.utt.voice == voice and it.utt.split == "train" and it.utt.style == "calm"
        ]
        calm.sort(key=lambda u: (u.shift != 0, u.uid))
        if len(calm) < 2:
            continue
        unshifted = [u for u in calm if u.shift == 0]
        ref = rng.choice(unshifted or calm)
        rest = [u for u in calm if u is not ref]
        picks = rng.sample(rest, min(per_voice, len(rest)))
        out += [(corpus / ref.wav, u.text, round(u.duration, 2)) for u in picks]
    if not out:
        raise ValidationError(
            "The emotion range needs a training voice with two calm recordings; the corpus "
            "has none."
        )
    return out


def write_emotion_range(root: Path, fit: RangeFit) -> None:
    """Put ``fit`` into the bundle at ``root``: ``range.safetensors``, ``emotion_range`` on in
    its config, and its manifest's file hashes brought up to date (written atomically)."""
    from safetensors.torch import save

    from dubstudio.engine.bundles import MANIFEST_NAME, sha256_file

    manifest_path = root / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    weights = {
        "style_log": fit.style_log.float().contiguous(),
        "weight": fit.weight.float().contiguous(),
        "bias": torch.tensor([fit.bias], dtype=torch.float32),
    }
    atomic_write_bytes(root / "range.safetensors", save(weights))
    manifest["config"]["emotion_range"] = True
    manifest["files"]["range.safetensors"] = sha256_file(root / "range.safetensors")
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
