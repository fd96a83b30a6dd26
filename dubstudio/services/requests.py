"""From a project Line to an engine SynthesisRequest: voice, emotion, budget, fit mode, seed.

This is the single place where the editor's vocabulary (fit modes, emotion modes, voice profiles
with paths relative to the project) becomes the engine's (`dubstudio.engine.api`):

==========================  =================================================================
``FitMode.NATURAL``         ``target_samples=None``, ``duration_mode="free"``
``FitMode.EXACT``           ``target_samples`` = slot samples, ``duration_mode="exact"``
``FitMode.EXACT_WITH_...``  same, with ``lead_in_samples``/``lead_out_samples`` from core timing
``EmotionMode.SAME_AS_...`` ``EmotionRequest(mode="voice")``
``EmotionMode.SLIDERS``     ``mode="vector"`` with the eight values and alpha
``EmotionMode.REFERENCE...`` ``mode="audio"`` with the clip as a `VoiceRef`
``EmotionMode.TEXT``        ``mode="text"`` with the description and alpha
==========================  =================================================================

Budgets come from `Project.line_budget` (exact rational time at the project's rates), so a take
rendered for a budget has exactly the samples the slot owns.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from dubstudio.core.errors import ValidationError
from dubstudio.core.model import EmotionMode, EmotionSpec, FitMode, Line, Project
from dubstudio.engine.api import EmotionRequest, SynthesisRequest, VoiceRef


def derived_seed(line_id: str) -> int:
    """The seed of a line that has none: stable, from its id (so re-renders are reproducible)."""
    return int.from_bytes(hashlib.sha256(line_id.encode()).digest()[:4], "little") & 0x7FFFFFFF


class VoiceRefCache:
    """Builds `VoiceRef`s, hashing each reference file once per (path, size, mtime, trim).

    Hashing a clip reads the whole file; the render queue builds a request for every line on every
    edit, so the hash is remembered until the file changes. Thread-safe.
    """

    def __init__(self) -> None:
        self._refs: dict[tuple[str, int, int, float, float | None], VoiceRef] = {}
        self._lock = threading.Lock()

    def get(
        self, path: str | Path, trim_start_s: float = 0.0, trim_end_s: float | None = None
    ) -> VoiceRef:
        """A `VoiceRef` for the clip (raises `ValidationError` when the file is missing)."""
        resolved = str(Path(path).resolve())
        try:
            stat = os.stat(resolved)
        except OSError:
            raise ValidationError(
                f"Voice reference file not found: {path}. Relink the voice profile's clip."
            ) from None
        ident = (resolved, stat.st_size, stat.st_mtime_ns, trim_start_s, trim_end_s)
        with self._lock:
            ref = self._refs.get(ident)
        if ref is None:
            ref = VoiceRef(resolved, trim_start_s, trim_end_s)
            with self._lock:
                self._refs[ident] = ref
        return ref


@dataclass(frozen=True)
class RequestOptions:
    """Render settings that are not stored per line.

    Attributes:
        default_voice: Voice used for lines that have no voice profile (the CLI's ``--voice``).
        emotion_override: Emotion used for every line instead of its own (the CLI's
            ``--emotion``), or None.
        cfm_steps: Flow-matching steps (None: the bundle default).
        fit_dial: 0..1 between natural length and the full slot (engine ``fit_dial``).
    """

    default_voice: VoiceRef | None = None
    emotion_override: EmotionSpec | None = None
    cfm_steps: int | None = None
    fit_dial: float = 1.0


def voice_for_line(
    project: Project, line: Line, options: RequestOptions, refs: VoiceRefCache
) -> VoiceRef:
    """The voice reference a line is spoken with.

    Raises:
        ValidationError: The line has no voice (neither its own, its character's, nor a default).
    """
    voice_id = project.effective_voice_id(line)
    if voice_id is not None:
        profile = project.voice(voice_id)
        if not profile.clips:
            raise ValidationError(f"Voice '{profile.name}' has no reference clip; add one.")
        clip = profile.clips[0]
        return refs.get(project.resolve_path(clip.path), clip.trim_start_s, clip.trim_end_s)
    if options.default_voice is not None:
        return options.default_voice
    who = f"character '{line.character}'" if line.character else "this line"
    raise ValidationError(f"No voice for {who}; assign a voice profile or pass --voice.")


def emotion_for_line(project: Project, spec: EmotionSpec, refs: VoiceRefCache) -> EmotionRequest:
    """The engine's emotion request for a line's `EmotionSpec`."""
    if spec.mode is EmotionMode.SLIDERS:
        return EmotionRequest(mode="vector", vector=spec.vector, alpha=spec.alpha)
    if spec.mode is EmotionMode.REFERENCE_AUDIO:
        assert spec.reference_path is not None  # EmotionSpec validates this
        clip = refs.get(project.resolve_path(spec.reference_path))
        return EmotionRequest(mode="audio", audio=clip, alpha=spec.alpha)
    if spec.mode is EmotionMode.TEXT:
        return EmotionRequest(mode="text", description=spec.description, alpha=spec.alpha)
    return EmotionRequest(mode="voice")


def request_for_line(
    project: Project,
    line: Line,
    *,
    seed: int,
    options: RequestOptions | None = None,
    refs: VoiceRefCache | None = None,
) -> SynthesisRequest:
    """The engine request that renders ``line`` as the project currently describes it.

    Args:
        project: The project (rates, voices, characters).
        line: The line.
        seed: Random seed of the take.
        options: Settings not stored per line.
        refs: Voice hash memo (shared by a render service).

    Raises:
        ValidationError: The line has no text or no voice.
    """
    options = options or RequestOptions()
    refs = refs or VoiceRefCache()
    budget = project.line_budget(line)
    spec = options.emotion_override or line.emotion
    if line.fit_mode is FitMode.NATURAL:
        target: int | None = None
        mode = "free"
        lead_in = lead_out = 0
    else:
        target = budget.slot_samples
        mode = "exact"
        lead_in, lead_out = budget.lead_in_samples, budget.lead_out_samples
    return SynthesisRequest(
        text=line.speech_text,
        voice=voice_for_line(project, line, options, refs),
        emotion=emotion_for_line(project, spec, refs),
        sample_rate=project.sample_rate,
        target_samples=target,
        duration_mode=mode,  # type: ignore[arg-type]
        fit_dial=options.fit_dial,
        lead_in_samples=lead_in,
        lead_out_samples=lead_out,
        seed=seed,
        cfm_steps=options.cfm_steps,
        request_id=line.id,
    )
