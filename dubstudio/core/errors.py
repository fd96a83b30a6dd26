"""DubStudio's error hierarchy: every message says what went wrong and what to do about it."""

from __future__ import annotations

from collections.abc import Sequence


class DubStudioError(Exception):
    """Base class of every error DubStudio reports to a person."""


class ValidationError(DubStudioError):
    """A value a person entered or a file contained is out of range or malformed."""


class SubtitleError(DubStudioError):
    """A subtitle file cannot be read (or, in strict mode, contains a broken cue).

    Attributes:
        problems: The problems found (``dubstudio.core.subtitles.SubtitleProblem``), when the
            error lists broken cues; empty otherwise.
    """

    def __init__(self, message: str, problems: Sequence[object] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems)


class ProjectFileError(DubStudioError):
    """A project file cannot be read, validated, migrated or written."""


class ModelLoadError(DubStudioError):
    """A model bundle or weight file is missing or unreadable."""


class CheckpointMismatchError(ModelLoadError):
    """A checkpoint's keys or shapes differ from what the model expects (names them)."""


class RenderError(DubStudioError):
    """Synthesis of a line failed."""


class RenderCancelled(DubStudioError):
    """A render was stopped on request (``should_stop`` returned True)."""


class AudioDeviceError(DubStudioError):
    """No usable audio output device."""


class ExportError(DubStudioError):
    """An export could not be written."""
