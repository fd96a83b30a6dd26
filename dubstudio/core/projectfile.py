"""`.dubproj` project files: JSON with a schema version, migrations, atomic save and autosave.

Format (schema 1)::

    {"format": "dubstudio-project", "schema_version": 1, "app_version": "0.1.0",
     "fps": "24000/1001", "sample_rate": 48000, "bit_depth": 24, "video": "clip.mp4",
     "characters": {"Maya": "v1"}, "voices": [...], "lines": [...], "settings": {...}}

Media paths (video, reference clips, take files) are stored relative to the project file's folder
whenever they are on the same drive, so a project folder can be moved or shared as a whole.
Frame rates are exact fractions written as ``"N/D"`` strings; times are frame numbers.

Saving writes a temporary file, fsyncs it and renames it over the project (see
:mod:`dubstudio.core.fsutil`), so a crash leaves either the old or the new file. Autosave writes the
same JSON to ``NAME.dubproj.autosave`` beside the project; :func:`recovery_candidate` tells the
editor on the next open that an autosave newer than the project exists. Files are never pickled.

Older schemas are upgraded on load by the functions in :data:`MIGRATIONS`, one version step at a
time; a file from a newer DubStudio is refused with a message saying so.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

from dubstudio import __version__
from dubstudio.core.errors import DubStudioError, ProjectFileError
from dubstudio.core.fsutil import atomic_write_bytes
from dubstudio.core.model import (
    EmotionMode,
    EmotionSpec,
    FitMode,
    Line,
    Project,
    ReferenceClip,
    Take,
    VoiceProfile,
)
from dubstudio.core.timing import parse_fps, seconds_to_frame

logger = logging.getLogger(__name__)

FORMAT_NAME = "dubstudio-project"
SCHEMA_VERSION = 1
PROJECT_SUFFIX = ".dubproj"
AUTOSAVE_SUFFIX = ".autosave"

JsonDict = dict[str, Any]


# ----------------------------------------------------------------------------------------------
# Migrations


def _migrate_0_to_1(data: JsonDict) -> JsonDict:
    """Schema 0 (pre-release drafts): times in milliseconds, ``voice`` instead of ``voice_id``,
    frame rate as a number. Schema 1 stores frames and exact rates."""
    fps = parse_fps(data.get("fps", "24000/1001"))
    lines = []
    for raw in data.get("lines", []):
        line = dict(raw)
        if "start_ms" in line:
            start = seconds_to_frame(Fraction(int(line.pop("start_ms")), 1000), fps)
            end = seconds_to_frame(Fraction(int(line.pop("end_ms")), 1000), fps)
            line["start_frame"], line["end_frame"] = start, max(start + 1, end)
        if "voice" in line:
            line["voice_id"] = line.pop("voice")
        lines.append(line)
    return {
        **data,
        "fps": f"{fps.numerator}/{fps.denominator}",
        "lines": lines,
        "schema_version": 1,
    }


#: ``MIGRATIONS[n]`` upgrades a schema-``n`` dict to schema ``n + 1``.
MIGRATIONS: dict[int, Callable[[JsonDict], JsonDict]] = {0: _migrate_0_to_1}


def migrate(data: JsonDict) -> JsonDict:
    """Upgrade a project dict to the current schema.

    Raises:
        ProjectFileError: If the file is from a newer DubStudio or has no known upgrade path.
    """
    version = data.get("schema_version", 0)
    if not isinstance(version, int) or version < 0:
        raise ProjectFileError(f"schema_version must be a whole number (got {version!r}).")
    if version > SCHEMA_VERSION:
        raise ProjectFileError(
            f"This project was saved by a newer DubStudio (schema {version}; this version reads "
            f"up to {SCHEMA_VERSION}). Update DubStudio to open it."
        )
    while version < SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise ProjectFileError(f"No upgrade path from project schema {version}.")
        logger.info("Upgrading project from schema %d to %d", version, version + 1)
        data = step(data)
        version += 1
        data["schema_version"] = version
    return data


# ----------------------------------------------------------------------------------------------
# Project -> JSON


def _emotion_to_json(spec: EmotionSpec) -> JsonDict:
    return {
        "mode": str(spec.mode),
        "vector": list(spec.vector),
        "alpha": spec.alpha,
        "reference_path": spec.reference_path,
        "description": spec.description,
    }


def _take_to_json(take: Take) -> JsonDict:
    return {
        "id": take.id,
        "cache_key": take.cache_key,
        "sample_rate": take.sample_rate,
        "n_samples": take.n_samples,
        "seed": take.seed,
        "emotion": _emotion_to_json(take.emotion),
        "budget_samples": take.budget_samples,
        "created": take.created,
        "model_identity": take.model_identity,
        "path": take.path,
        "text": take.text,
        "line_revision": take.line_revision,
        "starred": take.starred,
    }


def _line_to_json(line: Line) -> JsonDict:
    return {
        "id": line.id,
        "text": line.text,
        "start_frame": line.start_frame,
        "end_frame": line.end_frame,
        "character": line.character,
        "voice_id": line.voice_id,
        "emotion": _emotion_to_json(line.emotion),
        "fit_mode": str(line.fit_mode),
        "lead_in_s": line.lead_in_s,
        "lead_out_s": line.lead_out_s,
        "seed": line.seed,
        "takes": [_take_to_json(t) for t in line.takes],
        "active_take_id": line.active_take_id,
        "locked": line.locked,
        "notes": line.notes,
        "revision": line.revision,
    }


def _voice_to_json(voice: VoiceProfile) -> JsonDict:
    return {
        "id": voice.id,
        "name": voice.name,
        "clips": [
            {"path": c.path, "trim_start_s": c.trim_start_s, "trim_end_s": c.trim_end_s}
            for c in voice.clips
        ],
        "language": voice.language,
        "notes": voice.notes,
        "speaking_rate": voice.speaking_rate,
    }


def project_to_json(project: Project) -> JsonDict:
    """The project as a JSON-ready dict (current schema)."""
    fps = project.fps
    return {
        "format": FORMAT_NAME,
        "schema_version": SCHEMA_VERSION,
        "app_version": __version__,
        "fps": f"{fps.numerator}/{fps.denominator}",
        "sample_rate": project.sample_rate,
        "bit_depth": project.bit_depth,
        "video": project.video_path,
        "characters": dict(project.characters),
        "voices": [_voice_to_json(v) for v in project.voices],
        "lines": [_line_to_json(line) for line in project.lines],
        "settings": dict(project.settings),
    }


def dumps(project: Project) -> bytes:
    """The project file's bytes (UTF-8 JSON, indented, ending in a newline)."""
    try:
        text = json.dumps(project_to_json(project), indent=1, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ProjectFileError(f"A project setting cannot be saved as JSON: {exc}.") from None
    return (text + "\n").encode("utf-8")


# ----------------------------------------------------------------------------------------------
# JSON -> Project, with validation that names where the problem is


class _Reader:
    """Reads fields from JSON dicts and collects every problem with its location."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def get(
        self,
        obj: JsonDict,
        key: str,
        kind: type | tuple[type, ...],
        where: str,
        default: Any = ...,
    ) -> Any:
        if key not in obj or obj[key] is None:
            if default is ...:
                self.problems.append(f"{where}: '{key}' is missing.")
                return None
            return default
        value = obj[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # bool is an int in Python but never a valid number in a project file.
        if isinstance(value, bool) and bool not in kinds:
            ok = False
        elif float in kinds and isinstance(value, int):
            ok = True
        else:
            ok = isinstance(value, kinds)
        if not ok:
            names = " or ".join(_KIND_NAMES.get(k, k.__name__) for k in kinds)
            self.problems.append(f"{where}: '{key}' must be {names} (got {value!r}).")
            return None if default is ... else default
        return value

    def build(self, where: str, factory: Callable[[], Any]) -> Any:
        try:
            return factory()
        except DubStudioError as exc:
            self.problems.append(f"{where}: {exc}")
        except (TypeError, ValueError) as exc:
            self.problems.append(f"{where}: {exc}")
        return None


_KIND_NAMES = {int: "a whole number", float: "a number", str: "text", bool: "true or false"}
_KIND_NAMES[list] = "a list"
_KIND_NAMES[dict] = "an object"


def _emotion_from_json(r: _Reader, raw: Any, where: str) -> EmotionSpec:
    if raw is None:
        return EmotionSpec()
    if not isinstance(raw, dict):
        r.problems.append(f"{where}: 'emotion' must be an object.")
        return EmotionSpec()
    mode = r.get(raw, "mode", str, where, "same-as-voice")
    if mode not in {m.value for m in EmotionMode}:
        r.problems.append(
            f"{where}: emotion mode {mode!r} is unknown; use one of "
            f"{', '.join(m.value for m in EmotionMode)}."
        )
        mode = "same-as-voice"
    vector = r.get(raw, "vector", list, where, [0.0] * 8)
    spec = r.build(
        where,
        lambda: EmotionSpec(
            mode=EmotionMode(mode),
            vector=tuple(vector),
            alpha=r.get(raw, "alpha", float, where, 1.0),
            reference_path=r.get(raw, "reference_path", str, where, None),
            description=r.get(raw, "description", str, where, ""),
        ),
    )
    return spec if spec is not None else EmotionSpec()


def _take_from_json(r: _Reader, raw: Any, where: str) -> Take | None:
    if not isinstance(raw, dict):
        r.problems.append(f"{where}: a take must be an object.")
        return None
    g = r.get
    return Take(
        id=g(raw, "id", str, where),
        cache_key=g(raw, "cache_key", str, where),
        sample_rate=g(raw, "sample_rate", int, where),
        n_samples=g(raw, "n_samples", int, where),
        seed=g(raw, "seed", int, where),
        emotion=_emotion_from_json(r, raw.get("emotion"), where),
        budget_samples=g(raw, "budget_samples", int, where, None),
        created=g(raw, "created", str, where, ""),
        model_identity=g(raw, "model_identity", str, where, ""),
        path=g(raw, "path", str, where, None),
        text=g(raw, "text", str, where, ""),
        line_revision=g(raw, "line_revision", int, where, 0),
        starred=g(raw, "starred", bool, where, False),
    )


def _line_from_json(r: _Reader, raw: Any, number: int) -> Line | None:
    where = f"line {number}"
    if not isinstance(raw, dict):
        r.problems.append(f"{where}: must be an object.")
        return None
    if isinstance(raw.get("id"), str):
        where = f"line {number} (id {raw['id']})"
    g = r.get
    fit = g(raw, "fit_mode", str, where, "exact")
    if fit not in {m.value for m in FitMode}:
        r.problems.append(
            f"{where}: fit mode {fit!r} is unknown; use one of "
            f"{', '.join(m.value for m in FitMode)}."
        )
        fit = "exact"
    takes_raw = g(raw, "takes", list, where, [])
    takes = [_take_from_json(r, t, f"{where}, take {i + 1}") for i, t in enumerate(takes_raw)]
    fields = {
        "id": g(raw, "id", str, where),
        "text": g(raw, "text", str, where, ""),
        "start_frame": g(raw, "start_frame", int, where),
        "end_frame": g(raw, "end_frame", int, where),
        "character": g(raw, "character", str, where, ""),
        "voice_id": g(raw, "voice_id", str, where, None),
        "emotion": _emotion_from_json(r, raw.get("emotion"), where),
        "fit_mode": FitMode(fit),
        "lead_in_s": g(raw, "lead_in_s", float, where, 0.1),
        "lead_out_s": g(raw, "lead_out_s", float, where, 0.1),
        "seed": g(raw, "seed", int, where, None),
        "takes": tuple(t for t in takes if t is not None),
        "active_take_id": g(raw, "active_take_id", str, where, None),
        "locked": g(raw, "locked", bool, where, False),
        "notes": g(raw, "notes", str, where, ""),
        "revision": g(raw, "revision", int, where, 0),
    }
    if any(fields[k] is None for k in ("id", "start_frame", "end_frame")):
        return None  # already reported as missing or mistyped
    line: Line | None = r.build(where, lambda: Line(**fields))
    return line


def _voice_from_json(r: _Reader, raw: Any, number: int) -> VoiceProfile | None:
    where = f"voice {number}"
    if not isinstance(raw, dict):
        r.problems.append(f"{where}: must be an object.")
        return None
    g = r.get
    clips = []
    for i, clip in enumerate(g(raw, "clips", list, where, [])):
        cw = f"{where}, clip {i + 1}"
        if not isinstance(clip, dict):
            r.problems.append(f"{cw}: must be an object.")
            continue
        clip_path = g(clip, "path", str, cw)
        trim_start = g(clip, "trim_start_s", float, cw, 0.0)
        trim_end = g(clip, "trim_end_s", float, cw, None)
        built = r.build(cw, partial(ReferenceClip, clip_path, trim_start, trim_end))
        if built is not None:
            clips.append(built)
    voice: VoiceProfile | None = r.build(
        where,
        lambda: VoiceProfile(
            id=g(raw, "id", str, where),
            name=g(raw, "name", str, where, "") or "",
            clips=tuple(clips),
            language=g(raw, "language", str, where, "en"),
            notes=g(raw, "notes", str, where, ""),
            speaking_rate=g(raw, "speaking_rate", float, where, None),
        ),
    )
    return voice


def project_from_json(data: Any, path: Path | None = None) -> Project:
    """Build a project from a decoded project file (migrating old schemas first).

    Raises:
        ProjectFileError: Listing every problem found, each with where it is.
    """
    if not isinstance(data, dict):
        raise ProjectFileError("A project file must contain a JSON object.")
    fmt = data.get("format", FORMAT_NAME)
    if fmt != FORMAT_NAME:
        raise ProjectFileError(f"This is not a DubStudio project (format {fmt!r}).")
    data = migrate(data)
    r = _Reader()
    try:
        fps = parse_fps(data.get("fps", "24000/1001"))
    except DubStudioError as exc:
        r.problems.append(f"project: {exc}")
        fps = Fraction(24000, 1001)
    voices = [
        v
        for i, raw in enumerate(r.get(data, "voices", list, "project", []))
        if (v := _voice_from_json(r, raw, i + 1)) is not None
    ]
    lines = [
        line
        for i, raw in enumerate(r.get(data, "lines", list, "project", []))
        if (line := _line_from_json(r, raw, i + 1)) is not None
    ]
    characters = r.get(data, "characters", dict, "project", {})
    voice_ids = {v.id for v in voices}
    for name, voice_id in characters.items():
        if voice_id is not None and voice_id not in voice_ids:
            r.problems.append(
                f"character '{name}': voice {voice_id!r} does not exist; pick another voice."
            )
    for i, line in enumerate(lines):
        if line.voice_id is not None and line.voice_id not in voice_ids:
            r.problems.append(f"line {i + 1}: voice {line.voice_id!r} does not exist.")
    seen: set[str] = set()
    for i, line in enumerate(lines):
        if line.id in seen:
            r.problems.append(f"line {i + 1}: id {line.id!r} is used twice.")
        seen.add(line.id)
    project = r.build(
        "project",
        lambda: Project(
            fps=fps,
            sample_rate=r.get(data, "sample_rate", int, "project", 48000),
            bit_depth=r.get(data, "bit_depth", int, "project", 24),
            video_path=r.get(data, "video", str, "project", None),
            lines=lines,
            voices=voices,
            characters=characters,
            settings=r.get(data, "settings", dict, "project", {}),
            path=path,
        ),
    )
    if r.problems or project is None:
        shown = "\n".join(f"  - {p}" for p in r.problems[:20])
        more = f"\n  ... and {len(r.problems) - 20} more" if len(r.problems) > 20 else ""
        name = path.name if path else "project"
        raise ProjectFileError(
            f"{name} has {len(r.problems)} problem(s); fix them in a text editor or restore a "
            f"backup:\n{shown}{more}"
        )
    assert isinstance(project, Project)
    return project


# ----------------------------------------------------------------------------------------------
# Files


def loads(data: bytes | str, path: Path | None = None) -> Project:
    """Parse project file content."""
    try:
        decoded = json.loads(data)
    except json.JSONDecodeError as exc:
        name = path.name if path else "The project file"
        raise ProjectFileError(
            f"{name} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            f"it may be damaged. Look for {name}{AUTOSAVE_SUFFIX} or a backup."
        ) from None
    except UnicodeDecodeError:
        raise ProjectFileError("The project file is not UTF-8 text.") from None
    return project_from_json(decoded, path)


def load_project(path: Path | str, *, recover: bool = False) -> Project:
    """Open a project file.

    Args:
        path: The ``.dubproj`` file.
        recover: Open the autosave copy instead when one newer than the file exists.

    Raises:
        ProjectFileError: If the file cannot be read or is invalid (the message lists why).
    """
    path = Path(path).absolute()
    source = path
    if recover:
        candidate = recovery_candidate(path)
        if candidate is not None:
            source = candidate
    try:
        content = source.read_bytes()
    except OSError as exc:
        raise ProjectFileError(f"Cannot open {source}: {exc.strerror or exc}.") from None
    project = loads(content, path)
    if source != path:
        logger.warning("Recovered %s from its autosave", path.name)
    return project


def save_project(project: Project, path: Path | str | None = None) -> Path:
    """Save atomically; with a new ``path`` the media paths are rebased to the new folder.

    Returns:
        Where the project was saved. The autosave copy is removed afterwards.

    Raises:
        ProjectFileError: If the file cannot be written (the previous file is then untouched).
    """
    target = Path(path).absolute() if path is not None else project.path
    if target is None:
        raise ProjectFileError("This project has not been saved yet; choose a file name.")
    if target.suffix != PROJECT_SUFFIX:
        target = target.with_name(target.name + PROJECT_SUFFIX)
    if project.path is None or target.parent != project.path.parent:
        rebase_paths(project, target.parent)
    data = dumps(project)
    try:
        atomic_write_bytes(target, data)
    except OSError as exc:
        raise ProjectFileError(f"Cannot save {target}: {exc.strerror or exc}.") from None
    project.set_path(target)
    discard_autosave(target)
    return target


def rebase_paths(project: Project, new_dir: Path) -> None:
    """Rewrite the project's relative media paths so they are relative to ``new_dir``."""

    def rebase(stored: str) -> str:
        p = Path(stored)
        if p.is_absolute():
            absolute = p
        elif project.base_dir is not None:
            absolute = project.base_dir / p
        else:  # a project never saved: its relative paths were given relative to the cwd
            absolute = Path.cwd() / p
        try:
            return os.path.relpath(absolute, new_dir)
        except ValueError:  # another drive on Windows: keep it absolute
            return str(absolute)

    project.map_paths(rebase)


def autosave_path(path: Path | str) -> Path:
    """Where the autosave copy of a project file lives."""
    path = Path(path)
    return path.with_name(path.name + AUTOSAVE_SUFFIX)


def write_autosave(project: Project) -> Path:
    """Write the autosave copy (atomically) beside the project file; returns its path."""
    if project.path is None:
        raise ProjectFileError("Autosave needs a saved project; save it once first.")
    target = autosave_path(project.path)
    data = json.loads(dumps(project))
    data["autosaved_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        atomic_write_bytes(target, json.dumps(data, indent=1, ensure_ascii=False).encode("utf-8"))
    except OSError as exc:
        raise ProjectFileError(f"Cannot write autosave {target}: {exc.strerror or exc}.") from None
    return target


def recovery_candidate(path: Path | str) -> Path | None:
    """The autosave copy if it is newer than the project file (work that was not saved)."""
    path = Path(path)
    copy = autosave_path(path)
    if not copy.exists():
        return None
    if not path.exists() or copy.stat().st_mtime_ns > path.stat().st_mtime_ns:
        return copy
    return None


def discard_autosave(path: Path | str) -> None:
    """Delete the autosave copy of a project, if any."""
    with contextlib.suppress(FileNotFoundError):
        autosave_path(path).unlink()


def missing_media(project: Project) -> list[str]:
    """Messages for media files the project refers to that do not exist."""
    messages: list[str] = []
    if project.video_path and not project.resolve_path(project.video_path).exists():
        messages.append(f"Video {project.video_path} is missing; relink it in the project.")
    for voice in project.voices:
        for clip in voice.clips:
            if not project.resolve_path(clip.path).exists():
                messages.append(f"Voice '{voice.name}': reference clip {clip.path} is missing.")
    for i, line in enumerate(project.lines, start=1):
        ref = line.emotion.reference_path
        if ref and not project.resolve_path(ref).exists():
            messages.append(f"Line {i}: emotion reference {ref} is missing.")
    return messages
