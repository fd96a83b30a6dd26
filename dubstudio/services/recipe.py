"""Render recipes: a JSON file from which `dubstudio render` re-creates the same audio.

A recipe lists, per line, everything the audio depends on (text, voice clip and its content hash,
emotion, fit mode, margins, budget, seed) plus the model identity and the resulting take hash
(the cache key and the sha256 of the audio). Rendering a recipe with the same model gives the
same cache keys, so a recipe rendered into a warm cache costs nothing, and into a cold one gives
the same samples (the engine is deterministic for a request and seed).

Paths of voice clips are stored as written relative to the recipe's folder when possible.
"""

from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

from dubstudio.core.errors import ProjectFileError, ValidationError
from dubstudio.core.model import (
    EmotionMode,
    EmotionSpec,
    FitMode,
    Line,
    Project,
    ReferenceClip,
    VoiceProfile,
)
from dubstudio.services.cache import RenderCache
from dubstudio.services.export import START_TIMECODE_SETTING, line_label, programme_samples
from dubstudio.services.requests import (
    RequestOptions,
    VoiceRefCache,
    derived_seed,
    request_for_line,
)

RECIPE_FORMAT = "dubstudio-render-recipe"
RECIPE_VERSION = 1


def _rel(path: Path, base: Path) -> str:
    try:
        return os.path.relpath(path, base)
    except ValueError:  # another drive on Windows
        return str(path)


def _emotion_dict(spec: EmotionSpec, project: Project, base: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"mode": spec.mode.value, "alpha": spec.alpha}
    if spec.mode is EmotionMode.SLIDERS:
        out["vector"] = list(spec.vector)
    elif spec.mode is EmotionMode.REFERENCE_AUDIO and spec.reference_path:
        out["reference_path"] = _rel(project.resolve_path(spec.reference_path).resolve(), base)
    elif spec.mode is EmotionMode.TEXT:
        out["description"] = spec.description
    return out


def build_recipe(
    project: Project,
    *,
    model_identity: str,
    model_name: str = "",
    cache: RenderCache | None = None,
    options: RequestOptions | None = None,
    base_dir: str | Path = ".",
) -> dict[str, Any]:
    """The recipe of a project as rendered now (JSON-able).

    Args:
        project: The project (its selected takes are recorded).
        model_identity: The model bundle's content hash.
        model_name: The bundle's name or folder, for people.
        cache: Used to record the sha256 of each take's audio.
        options: The render options in effect (default voice, emotion override, steps).
        base_dir: Folder the recipe will be written to (voice paths are made relative to it).
    """
    options = options or RequestOptions()
    base = Path(base_dir).resolve()
    refs = VoiceRefCache()
    voices: dict[str, dict[str, Any]] = {}

    def voice_entry(path: str, trim_start: float, trim_end: float | None) -> str:
        ref = refs.get(path, trim_start, trim_end)
        voice_id = ref.content_hash[:12]
        voices.setdefault(
            voice_id,
            {
                "path": _rel(Path(ref.audio_path), base),
                "trim_start_s": trim_start,
                "trim_end_s": trim_end,
                "content_hash": ref.content_hash,
            },
        )
        return voice_id

    lines = []
    for index, line in enumerate(project.lines):
        if not line.speech_text:
            continue
        take = line.active_take
        seed = (
            take.seed
            if take is not None
            else (line.seed if line.seed is not None else derived_seed(line.id))
        )
        request = request_for_line(project, line, seed=seed, options=options, refs=refs)
        voice_id = voice_entry(
            request.voice.audio_path, request.voice.trim_start_s, request.voice.trim_end_s
        )
        budget = project.line_budget(line)
        entry: dict[str, Any] = {
            "index": index + 1,
            "label": line_label(index, line, project),
            "id": line.id,
            "text": line.text,
            "speech_text": line.speech_text,
            "character": line.character,
            "voice": voice_id,
            "emotion": _emotion_dict(options.emotion_override or line.emotion, project, base),
            "fit_mode": line.fit_mode.value,
            "lead_in_s": line.lead_in_s,
            "lead_out_s": line.lead_out_s,
            "start_frame": line.start_frame,
            "end_frame": line.end_frame,
            "start_sample": budget.start_sample,
            "budget_samples": request.target_samples,
            "tokens": budget.tokens,
            "mel_frames": budget.mel_frames,
            "seed": seed,
            "cache_key": request.cache_key(model_identity),
        }
        if take is not None:
            cached = cache.get(take.cache_key, touch=False) if cache is not None else None
            entry["take"] = {
                "cache_key": take.cache_key,
                "n_samples": take.n_samples,
                "sha256": cached.sha256 if cached is not None else None,
                "created": take.created,
            }
        lines.append(entry)
    return {
        "format": RECIPE_FORMAT,
        "version": RECIPE_VERSION,
        "model": {"identity": model_identity, "name": model_name},
        "fps": f"{project.fps.numerator}/{project.fps.denominator}",
        "sample_rate": project.sample_rate,
        "bit_depth": project.bit_depth,
        "programme_samples": programme_samples(project),
        "programme_start_timecode": project.settings.get(START_TIMECODE_SETTING),
        "cfm_steps": options.cfm_steps,
        "fit_dial": options.fit_dial,
        "voices": voices,
        "lines": lines,
    }


def write_recipe(recipe: dict[str, Any], path: str | Path) -> Path:
    """Write a recipe atomically (temp file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(recipe, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def is_recipe(path: str | Path) -> bool:
    """Whether a file is a render recipe (a JSON object with the recipe format tag)."""
    path = Path(path)
    if path.suffix.lower() != ".json":
        return False
    try:
        with open(path, encoding="utf-8") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    return RECIPE_FORMAT in head


def project_from_recipe(path: str | Path) -> tuple[Project, dict[str, Any]]:
    """A project that renders exactly what the recipe describes.

    Each line keeps its id, text, slot, character, emotion, fit mode and margins, and its seed
    is pinned to the recorded seed; each voice clip becomes a voice profile (its content hash is
    checked, so a changed clip is reported instead of silently rendering something else).

    Returns:
        ``(project, recipe)``; the project's path is set beside the recipe.

    Raises:
        ProjectFileError: The file is not a readable recipe, or a voice clip changed.
    """
    path = Path(path).resolve()
    try:
        recipe = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ProjectFileError(f"Cannot read render recipe {path}: {exc}") from exc
    if not isinstance(recipe, dict) or recipe.get("format") != RECIPE_FORMAT:
        raise ProjectFileError(f"{path} is not a DubStudio render recipe.")
    if int(recipe.get("version", 0)) > RECIPE_VERSION:
        raise ProjectFileError(f"{path} was written by a newer DubStudio; update to render it.")
    base = path.parent
    refs = VoiceRefCache()
    voices = []
    for voice_id, info in recipe["voices"].items():
        clip_path = (base / info["path"]).resolve()
        try:
            ref = refs.get(clip_path, float(info["trim_start_s"]), info["trim_end_s"])
        except ValidationError as exc:
            raise ProjectFileError(f"Recipe voice clip missing: {exc}") from exc
        if ref.content_hash != info["content_hash"]:
            raise ProjectFileError(
                f"Voice clip {clip_path} changed since the recipe was written; the audio would "
                "differ. Restore the original clip."
            )
        voices.append(
            VoiceProfile(
                id=voice_id,
                name=Path(info["path"]).stem,
                clips=(
                    ReferenceClip(str(clip_path), float(info["trim_start_s"]), info["trim_end_s"]),
                ),
            )
        )
    lines = []
    for item in recipe["lines"]:
        emotion = item["emotion"]
        spec = EmotionSpec(
            mode=EmotionMode(emotion["mode"]),
            vector=tuple(emotion.get("vector", (0.0,) * 8)),
            alpha=float(emotion.get("alpha", 1.0)),
            reference_path=(
                str((base / emotion["reference_path"]).resolve())
                if emotion.get("reference_path")
                else None
            ),
            description=emotion.get("description", ""),
        )
        lines.append(
            Line(
                text=item["text"],
                start_frame=int(item["start_frame"]),
                end_frame=int(item["end_frame"]),
                character=item.get("character", ""),
                voice_id=item["voice"],
                emotion=spec,
                fit_mode=FitMode(item["fit_mode"]),
                lead_in_s=float(item["lead_in_s"]),
                lead_out_s=float(item["lead_out_s"]),
                seed=int(item["seed"]),
                id=item["id"],
            )
        )
    settings: dict[str, Any] = {}
    if recipe.get("programme_start_timecode"):
        settings[START_TIMECODE_SETTING] = recipe["programme_start_timecode"]
    project = Project(
        fps=Fraction(recipe["fps"]),
        sample_rate=int(recipe["sample_rate"]),
        bit_depth=int(recipe.get("bit_depth", 24)),
        lines=lines,
        voices=voices,
        settings=settings,
        path=path.with_suffix(".dubproj"),
    )
    fps = project.fps
    total = int(recipe.get("programme_samples", 0))
    if total:
        # Keep the recorded programme length (it may extend past the last line).
        from dubstudio.core.timing import round_half_up

        frames = round_half_up(Fraction(total) * fps / project.sample_rate)
        project.set_setting("programme_frames", frames)
    return project, recipe
