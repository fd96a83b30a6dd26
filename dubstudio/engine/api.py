"""Request and result types of the speech engine: what every caller sends and gets back.

These are plain frozen dataclasses (no torch), so the render service, the editor and the CLI can
build, hash and queue them on any thread. The Synthesizer (`dubstudio.engine.pipeline`) consumes
them.

Lengths are in samples at the request's output ``sample_rate`` unless named otherwise.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dubstudio.core.errors import RenderCancelled, ValidationError
from dubstudio.core.model import EMOTION_NAMES  # the official emotion-vector order (§2.4)

EmotionModeName = Literal["voice", "vector", "audio", "text"]
DurationMode = Literal["free", "budget", "exact"]

EMOTION_MODES: tuple[str, ...] = ("voice", "vector", "audio", "text")
DURATION_MODES: tuple[str, ...] = ("free", "budget", "exact")

#: ``on_progress(fraction, stage)``: fraction in [0, 1] of the whole request; stage is one of
#: ``"conditioning"``, ``"t2s"``, ``"s2m"``, ``"vocoder"``, ``"done"``.
ProgressCallback = Callable[[float, str], None]
#: ``should_stop() -> bool``: polled once per decoding step and once per Euler step; True makes
#: the engine raise `RenderCancelled`.
StopCallback = Callable[[], bool]

# Read files in chunks when hashing so a long reference clip never sits in memory twice.
_HASH_CHUNK = 1 << 20


def hash_audio_file(
    path: str | Path, trim_start_s: float = 0.0, trim_end_s: float | None = None
) -> str:
    """Content hash of a reference clip: sha256 over the file's bytes and the trim bounds.

    Two copies of the same file at different paths get the same hash; the same file with a
    different trim gets a different one.

    Args:
        path: The audio file.
        trim_start_s: Seconds cut from the start.
        trim_end_s: End of the used region in seconds from the file start, or None for the end.

    Raises:
        ValidationError: The file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise ValidationError(f"Voice reference file not found: {path}. Pick the clip again.")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    end = "end" if trim_end_s is None else f"{float(trim_end_s):.6f}"
    digest.update(f"|trim={float(trim_start_s):.6f}:{end}".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class VoiceRef:
    """A reference clip that defines a voice (or an emotion, for ``EmotionRequest.audio``).

    Attributes:
        audio_path: Path of the clip (any format soundfile reads).
        trim_start_s: Seconds skipped at the start of the file.
        trim_end_s: End of the used region (seconds from the file start); None = end of file.
        content_hash: `hash_audio_file` of the clip and trim. Left empty, it is computed from
            the file when the VoiceRef is built, so caches key on the audio content, never on
            the path.
    """

    audio_path: str
    trim_start_s: float = 0.0
    trim_end_s: float | None = None
    content_hash: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "audio_path", str(self.audio_path))
        if self.trim_start_s < 0:
            raise ValidationError(f"Voice trim start must be >= 0 s, got {self.trim_start_s}.")
        if self.trim_end_s is not None and self.trim_end_s <= self.trim_start_s:
            raise ValidationError(
                f"Voice trim end ({self.trim_end_s} s) must be after its start "
                f"({self.trim_start_s} s)."
            )
        if not self.content_hash:
            object.__setattr__(
                self,
                "content_hash",
                hash_audio_file(self.audio_path, self.trim_start_s, self.trim_end_s),
            )

    @classmethod
    def from_file(
        cls, path: str | Path, trim_start_s: float = 0.0, trim_end_s: float | None = None
    ) -> VoiceRef:
        """Build a VoiceRef for ``path``, hashing its content."""
        return cls(str(path), trim_start_s, trim_end_s)

    def identity(self) -> dict[str, Any]:
        """The fields that decide the audio this reference produces (JSON-able)."""
        return {"content_hash": self.content_hash}


@dataclass(frozen=True)
class EmotionRequest:
    """How a line should be emotionally coloured.

    Modes:
        ``voice``: the emotion of the voice reference itself (official default).
        ``vector``: eight weights (`EMOTION_NAMES` order), each 0..1, through the bundle's
            emotion matrices; ``alpha`` scales them.
        ``audio``: the emotion of a separate clip ``audio``, blended with the voice's own by
            ``alpha`` (0 = voice's emotion, 1 = the clip's).
        ``text``: a free description ("quietly furious") turned into eight weights by the
            bundle's text-to-emotion head (the line text is used when ``description`` is empty);
            ``alpha`` scales them.

    Attributes:
        mode: One of `EMOTION_MODES`.
        vector: Eight weights for mode ``vector``.
        alpha: Strength, 0..1.
        audio: Emotion reference clip for mode ``audio``.
        description: Emotion description for mode ``text``.
    """

    mode: EmotionModeName = "voice"
    vector: tuple[float, ...] = (0.0,) * 8
    alpha: float = 1.0
    audio: VoiceRef | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.mode not in EMOTION_MODES:
            raise ValidationError(
                f"Unknown emotion mode '{self.mode}'; use one of {', '.join(EMOTION_MODES)}."
            )
        vector = tuple(float(v) for v in self.vector)
        object.__setattr__(self, "vector", vector)
        if len(vector) != len(EMOTION_NAMES):
            raise ValidationError(
                f"An emotion vector has {len(EMOTION_NAMES)} values "
                f"({', '.join(EMOTION_NAMES)}), got {len(vector)}."
            )
        if any(not math.isfinite(v) or v < 0.0 or v > 1.2 for v in vector):
            raise ValidationError(f"Emotion weights must lie in 0..1.2, got {vector}.")
        if not (math.isfinite(self.alpha) and 0.0 <= self.alpha <= 1.0):
            raise ValidationError(f"Emotion strength (alpha) must lie in 0..1, got {self.alpha}.")
        if self.mode == "audio" and self.audio is None:
            raise ValidationError("Emotion mode 'audio' needs an emotion reference clip.")

    def identity(self) -> dict[str, Any]:
        """The fields that decide the audio (JSON-able); unused fields of a mode are left out."""
        out: dict[str, Any] = {"mode": self.mode}
        if self.mode == "vector":
            out["vector"] = [round(v, 6) for v in self.vector]
            out["alpha"] = round(self.alpha, 6)
        elif self.mode == "audio":
            assert self.audio is not None
            out["audio"] = self.audio.content_hash
            out["alpha"] = round(self.alpha, 6)
        elif self.mode == "text":
            out["description"] = self.description
            out["alpha"] = round(self.alpha, 6)
        return out


@dataclass(frozen=True)
class SynthesisRequest:
    """One line to speak.

    The output is laid out as ``[lead_in silence | speech | lead_out silence]`` and, when
    ``target_samples`` is set, it is exactly ``target_samples`` long (the slot), margins included.

    Attributes:
        text: What to say.
        voice: The voice reference.
        emotion: Emotion control.
        sample_rate: Output sample rate in Hz (the engine resamples from the vocoder's rate).
        target_samples: Total output length in samples (the slot), or None for natural length.
        duration_mode: How the speech is fitted when ``target_samples`` is set:
            ``free``: the T2S model picks its token count; S2M stretches the mel to the slot.
            ``budget``: the T2S model is told the token count (duration embedding), stops
            by itself; S2M fits the mel exactly.
            ``exact``: the token count is guaranteed (stop forced at the budget); S2M exact.
        fit_dial: 0..1 between the natural length (0) and the full slot (1); the speech
            then fills ``natural + fit_dial · (slot − natural)`` and the rest is silence.
        lead_in_samples: Silence before the speech (inside ``target_samples``).
        lead_out_samples: Silence after the speech (inside ``target_samples``).
        seed: Random seed; the same request and seed give identical samples.
        cfm_steps: Euler steps of the flow-matching decoder, or None for the bundle default.
        request_id: Caller's tag, echoed in logs; does not affect the audio.
    """

    text: str
    voice: VoiceRef
    emotion: EmotionRequest = field(default_factory=EmotionRequest)
    sample_rate: int = 48000
    target_samples: int | None = None
    duration_mode: DurationMode = "exact"
    fit_dial: float = 1.0
    lead_in_samples: int = 0
    lead_out_samples: int = 0
    seed: int = 0
    cfm_steps: int | None = None
    request_id: str = ""

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise ValidationError("The line has no text to speak.")
        if self.sample_rate < 8000 or self.sample_rate > 192000:
            raise ValidationError(f"Output sample rate {self.sample_rate} Hz is out of range.")
        if self.duration_mode not in DURATION_MODES:
            raise ValidationError(
                f"Unknown duration mode '{self.duration_mode}'; use one of "
                f"{', '.join(DURATION_MODES)}."
            )
        if not (math.isfinite(self.fit_dial) and 0.0 <= self.fit_dial <= 1.0):
            raise ValidationError(f"The fit dial must lie in 0..1, got {self.fit_dial}.")
        if self.lead_in_samples < 0 or self.lead_out_samples < 0:
            raise ValidationError("Lead-in and lead-out margins cannot be negative.")
        if self.target_samples is not None:
            if self.target_samples <= 0:
                raise ValidationError(f"The slot length must be positive ({self.target_samples}).")
            if self.lead_in_samples + self.lead_out_samples >= self.target_samples:
                raise ValidationError(
                    "The lead-in and lead-out margins fill the whole slot; shorten them or "
                    "lengthen the line's slot."
                )
        if self.cfm_steps is not None and not 1 <= self.cfm_steps <= 200:
            raise ValidationError(f"Diffusion steps must lie in 1..200, got {self.cfm_steps}.")

    @property
    def speech_budget_samples(self) -> int | None:
        """Samples available for speech: the slot minus both margins (None = natural)."""
        if self.target_samples is None:
            return None
        return self.target_samples - self.lead_in_samples - self.lead_out_samples

    def identity(self) -> dict[str, Any]:
        """Every field that affects the audio, as a JSON-able dict (not ``request_id``)."""
        return {
            "text": self.text,
            "voice": self.voice.identity(),
            "emotion": self.emotion.identity(),
            "sample_rate": self.sample_rate,
            "target_samples": self.target_samples,
            "duration_mode": self.duration_mode,
            "fit_dial": round(self.fit_dial, 6),
            "lead_in_samples": self.lead_in_samples,
            "lead_out_samples": self.lead_out_samples,
            "seed": self.seed,
            "cfm_steps": self.cfm_steps,
        }

    def cache_key(self, model_identity: str = "") -> str:
        """Stable sha256 hex key of this request's audio, optionally bound to a model.

        Args:
            model_identity: `Synthesizer.identity` (the bundle content hash); two models never
                share a key.
        """
        payload = {"model": model_identity, "request": self.identity()}
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True, eq=False)
class SynthesisResult:
    """The audio of one request.

    Attributes:
        audio: float32 samples, shape ``(N,)``, mono, in [-1, 1]; N == ``target_samples`` when
            the request set one.
        sample_rate: Hz, the request's ``sample_rate``.
        tokens: Semantic tokens generated (all segments).
        mel_frames: Mel frames decoded (all segments).
        natural_tokens: Token count of the unconstrained run when one was needed (fit dial),
            else None.
        stage_seconds: Wall-clock seconds per stage (``conditioning``, ``t2s``, ``s2m``,
            ``vocoder``, ``post``).
        request_id: Echo of the request's id.
    """

    audio: np.ndarray
    sample_rate: int
    tokens: int
    mel_frames: int
    natural_tokens: int | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    request_id: str = ""

    @property
    def duration_s(self) -> float:
        """Length of the audio in seconds."""
        return len(self.audio) / self.sample_rate


def raise_if_stopped(should_stop: StopCallback | None, where: str) -> None:
    """Raise `RenderCancelled` if ``should_stop`` says so (call once per step)."""
    if should_stop is not None and should_stop():
        raise RenderCancelled(f"Rendering was stopped during {where}.")
