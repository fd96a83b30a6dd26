"""The domain model: a Project of Lines, VoiceProfiles and characters, with change notifications.

Ownership and change notification
---------------------------------
A :class:`Project` owns its lines, voice profiles and characters. Read them freely; change them
only through the project's methods (:meth:`Project.update_line`, :meth:`Project.insert_lines`,
:meth:`Project.remove_lines`, :meth:`Project.set_voice`, ...) or, for undoable edits, through
:mod:`dubstudio.core.commands`, which call those methods. Every change is announced to the
callbacks registered with :meth:`Project.subscribe`, synchronously and in registration order,
with one small frozen event object:

- :class:`LineChanged` ``(line_id, fields)`` -- attributes of one line changed; ``fields`` names
  them (``"text"``, ``"start_frame"``, ``"voice_id"``, ``"emotion"``, ``"takes"``, ...), plus
  ``"voice"`` when the voice it is spoken with changed by any route. When the change affects the
  line's audio, ``"revision"`` is among the fields.
- :class:`LinesInserted` ``(indices)`` -- lines now sit at these indices (ascending).
- :class:`LinesRemoved` ``(ids, indices)`` -- these lines were removed from these indices (the
  indices they had before the removal, ascending).
- :class:`VoiceProfilesChanged` ``(ids)`` -- voice profiles added, changed or removed.
- :class:`ProjectChanged` ``(fields)`` -- project-wide settings changed (``"fps"``,
  ``"sample_rate"``, ``"bit_depth"``, ``"video_path"``, ``"characters"``, ``"settings"``,
  ``"path"``, ``"paths"`` -- media paths rewritten because the project moved).

Qt item models in ``dubstudio.ui`` are thin adapters that translate these events into their own
signals; nothing here imports Qt.

Revisions
---------
Every :class:`Line` has a stable ``id`` (never reused) and an integer ``revision`` that increments
whenever something that affects its rendered audio changes: speech text, a retime that changes its
sample budget, its voice (directly, through its character, or by an edit of the voice profile),
its emotion, fit mode or margins, its seed, or the project's frame rate or sample rate. Undo is a
change too, so revisions only ever grow. The render queue stamps requests with the revision and
drops results whose revision is stale.
"""

from __future__ import annotations

import copy
import enum
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from dubstudio.core.errors import ValidationError
from dubstudio.core.timing import (
    DEFAULT_FPS,
    DEFAULT_SAMPLE_RATE,
    INDEXTTS2_MEL_RATE,
    INDEXTTS2_TOKEN_RATE,
    LineBudget,
    Slot,
    line_budget,
    parse_fps,
    seconds_to_frame,
)

logger = logging.getLogger(__name__)

#: IndexTTS-2's eight emotion dimensions, in the order of its emotion vector.
EMOTION_NAMES: tuple[str, ...] = (
    "happy",
    "angry",
    "sad",
    "afraid",
    "disgusted",
    "melancholic",
    "surprised",
    "calm",
)

#: Default lead-in and lead-out of the exact-with-margins fit mode, in seconds.
DEFAULT_MARGIN_SECONDS = 0.1

SUPPORTED_SAMPLE_RATES = (16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000)
SUPPORTED_BIT_DEPTHS = (16, 24, 32)


def new_id() -> str:
    """A fresh, never-reused identifier (12 hex digits of a random UUID)."""
    return uuid.uuid4().hex[:12]


class EmotionMode(enum.StrEnum):
    """Where a line's emotion comes from."""

    SAME_AS_VOICE = "same-as-voice"  # the voice reference clip's own emotion
    SLIDERS = "sliders"  # the eight-value vector
    REFERENCE_AUDIO = "reference-audio"  # a separate emotion reference clip
    TEXT = "text"  # a description, turned into a vector by the engine


class FitMode(enum.StrEnum):
    """How a line's speech length relates to its slot."""

    NATURAL = "natural"  # the model decides; a forecast warns when it would overrun
    EXACT = "exact"  # speech fills the slot
    EXACT_WITH_MARGINS = "exact-with-margins"  # slot minus lead-in and lead-out


_ZERO_VECTOR: tuple[float, ...] = (0.0,) * len(EMOTION_NAMES)


@dataclass(frozen=True, slots=True)
class EmotionSpec:
    """A line's emotion.

    Attributes:
        mode: Which source is used.
        vector: Eight values in 0..1, in :data:`EMOTION_NAMES` order (used by ``sliders``).
        alpha: Strength 0..1 with which the emotion is blended in.
        reference_path: Emotion reference clip (``reference-audio``), relative to the project.
        description: Free text (``text`` mode), e.g. "whispering, scared".
    """

    mode: EmotionMode = EmotionMode.SAME_AS_VOICE
    vector: tuple[float, ...] = _ZERO_VECTOR
    alpha: float = 1.0
    reference_path: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", EmotionMode(self.mode))
        vector = tuple(float(v) for v in self.vector)
        if len(vector) != len(EMOTION_NAMES):
            raise ValidationError(
                f"An emotion vector has {len(EMOTION_NAMES)} values "
                f"({', '.join(EMOTION_NAMES)}); got {len(vector)}."
            )
        for name, value in zip(EMOTION_NAMES, vector, strict=True):
            if not 0.0 <= value <= 1.0:
                raise ValidationError(f"Emotion '{name}' must be between 0 and 1 (got {value}).")
        object.__setattr__(self, "vector", vector)
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise ValidationError(f"Emotion strength must be between 0 and 1 (got {self.alpha}).")
        object.__setattr__(self, "alpha", float(self.alpha))
        if self.mode is EmotionMode.REFERENCE_AUDIO and not self.reference_path:
            raise ValidationError("Emotion from reference audio needs a reference clip; pick one.")

    @classmethod
    def from_values(cls, alpha: float = 1.0, **values: float) -> EmotionSpec:
        """Slider emotion from named values, e.g. ``EmotionSpec.from_values(happy=0.8)``."""
        unknown = set(values) - set(EMOTION_NAMES)
        if unknown:
            raise ValidationError(
                f"Unknown emotion(s) {sorted(unknown)}; use {', '.join(EMOTION_NAMES)}."
            )
        vector = tuple(float(values.get(name, 0.0)) for name in EMOTION_NAMES)
        return cls(mode=EmotionMode.SLIDERS, vector=vector, alpha=alpha)

    def as_dict(self) -> dict[str, float]:
        """The vector as ``{name: value}``."""
        return dict(zip(EMOTION_NAMES, self.vector, strict=True))


@dataclass(frozen=True, slots=True)
class ReferenceClip:
    """A reference recording and the part of it to use.

    Attributes:
        path: Audio file, relative to the project file when possible.
        trim_start_s: Seconds skipped at the start.
        trim_end_s: Seconds where the used part ends (None: the end of the file).
    """

    path: str
    trim_start_s: float = 0.0
    trim_end_s: float | None = None

    def __post_init__(self) -> None:
        if self.trim_start_s < 0:
            raise ValidationError(f"Trim start of {self.path} cannot be negative.")
        if self.trim_end_s is not None and self.trim_end_s <= self.trim_start_s:
            raise ValidationError(
                f"Trim range of {self.path} is empty ({self.trim_start_s}..{self.trim_end_s} s)."
            )


@dataclass(frozen=True, slots=True)
class VoiceProfile:
    """A voice to clone: one or more reference clips plus what we know about the speaker.

    Attributes:
        id: Stable identifier.
        name: Name shown to people.
        clips: Reference clips (the first is the main one).
        language: BCP-47-ish language code of the speaker ("en", "zh", ...).
        notes: Free text.
        speaking_rate: Measured syllables (or characters for CJK) per second, when known; the fit
            forecast prefers it over the language default.
    """

    id: str
    name: str
    clips: tuple[ReferenceClip, ...] = ()
    language: str = "en"
    notes: str = ""
    speaking_rate: float | None = None

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValidationError("A voice profile needs a name.")
        object.__setattr__(self, "clips", tuple(self.clips))
        if self.speaking_rate is not None and self.speaking_rate <= 0:
            raise ValidationError(f"Speaking rate of '{self.name}' must be positive.")


@dataclass(frozen=True, slots=True)
class Take:
    """One rendered version of a line.

    Attributes:
        id: Stable identifier.
        cache_key: Content key of the audio in the render cache.
        sample_rate: Sample rate of the audio (Hz).
        n_samples: Length of the audio in samples.
        seed: Random seed used.
        emotion: The emotion the take was rendered with (a snapshot).
        budget_samples: Sample budget requested (None for natural length).
        created: Creation time, ISO 8601 UTC.
        model_identity: Content hash of the model bundle that rendered it.
        path: Audio file relative to the project, or None when it lives only in the cache.
        text: The speech text it says.
        line_revision: The line revision it was rendered for.
        starred: Marked as preferred by the user.
    """

    id: str
    cache_key: str
    sample_rate: int
    n_samples: int
    seed: int
    emotion: EmotionSpec
    budget_samples: int | None
    created: str
    model_identity: str
    path: str | None = None
    text: str = ""
    line_revision: int = 0
    starred: bool = False


_TAG_HTML = re.compile(r"</?[A-Za-z][^<>]*>")
_TAG_ASS = re.compile(r"\{[^{}]*\}")
_WHITESPACE = re.compile(r"\s+")


def strip_markup(text: str) -> str:
    """Speech text of subtitle markup: HTML-ish tags and ASS override blocks removed,
    ASS line breaks (``\\N``, ``\\n``) and hard spaces (``\\h``) turned into spaces, whitespace
    collapsed."""
    text = _TAG_ASS.sub("", text)
    text = _TAG_HTML.sub("", text)
    text = text.replace("\\N", " ").replace("\\n", " ").replace("\\h", " ")
    return _WHITESPACE.sub(" ", text).strip()


# Line attributes whose change always changes the audio.
_AUDIO_FIELDS = frozenset({"emotion", "fit_mode", "lead_in_s", "lead_out_s", "seed"})
_TIMING_FIELDS = frozenset({"start_frame", "end_frame"})
_EDITABLE_FIELDS = frozenset(
    {
        "text",
        "start_frame",
        "end_frame",
        "character",
        "voice_id",
        "emotion",
        "fit_mode",
        "lead_in_s",
        "lead_out_s",
        "seed",
        "takes",
        "active_take_id",
        "locked",
        "notes",
    }
)


@dataclass(slots=True, eq=False)
class Line:
    """One line of dialogue: text, place in the picture, who says it and how.

    Attributes:
        id: Stable identifier, never reused.
        text: Text as written, with any subtitle markup kept (exported back as is).
        start_frame: First frame of the line.
        end_frame: First frame after the line.
        character: Character who speaks it ("" when unknown).
        voice_id: Voice profile override; None uses the character's voice.
        emotion: Emotion to speak it with.
        fit_mode: How speech length relates to the slot.
        lead_in_s: Silence before speech in exact-with-margins mode (seconds).
        lead_out_s: Silence after speech in exact-with-margins mode (seconds).
        seed: Random seed for rendering (None: derived from the id by the renderer).
        takes: Rendered takes, oldest first.
        active_take_id: The take used in playback and export.
        locked: A locked line refuses edits that would change its audio.
        notes: Free text.
        revision: Increments on every change that affects the audio.
    """

    text: str
    start_frame: int
    end_frame: int
    character: str = ""
    voice_id: str | None = None
    emotion: EmotionSpec = field(default_factory=EmotionSpec)
    fit_mode: FitMode = FitMode.EXACT
    lead_in_s: float = DEFAULT_MARGIN_SECONDS
    lead_out_s: float = DEFAULT_MARGIN_SECONDS
    seed: int | None = None
    takes: tuple[Take, ...] = ()
    active_take_id: str | None = None
    locked: bool = False
    notes: str = ""
    id: str = field(default_factory=new_id)
    revision: int = 0

    def __post_init__(self) -> None:
        Slot(self.start_frame, self.end_frame)  # validates
        self.fit_mode = FitMode(self.fit_mode)
        self.takes = tuple(self.takes)
        if self.lead_in_s < 0 or self.lead_out_s < 0:
            raise ValidationError("Lead-in and lead-out margins cannot be negative.")

    @property
    def slot(self) -> Slot:
        """The frames the line occupies."""
        return Slot(self.start_frame, self.end_frame)

    @property
    def speech_text(self) -> str:
        """The text to speak: markup stripped."""
        return strip_markup(self.text)

    @property
    def active_take(self) -> Take | None:
        """The take in use, if any."""
        for take in self.takes:
            if take.id == self.active_take_id:
                return take
        return None

    def margins_seconds(self) -> tuple[float, float]:
        """(lead-in, lead-out) in effect: the line's margins in exact-with-margins mode, else 0."""
        if self.fit_mode is FitMode.EXACT_WITH_MARGINS:
            return self.lead_in_s, self.lead_out_s
        return 0.0, 0.0

    def snapshot(self) -> dict[str, Any]:
        """The editable attributes as a dict (for undo and comparisons)."""
        return {name: getattr(self, name) for name in _EDITABLE_FIELDS}

    def copy(self, *, new_identity: bool = False) -> Line:
        """A detached copy; with ``new_identity`` it gets a fresh id and revision 0."""
        clone = copy.copy(self)
        if new_identity:
            clone.id = new_id()
            clone.revision = 0
        return clone


# ----------------------------------------------------------------------------------------------
# Events


@dataclass(frozen=True, slots=True)
class LineChanged:
    """Attributes of one line changed."""

    line_id: str
    fields: frozenset[str]


@dataclass(frozen=True, slots=True)
class LinesInserted:
    """Lines were inserted; they now sit at these indices (ascending)."""

    indices: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class LinesRemoved:
    """Lines were removed; ``indices`` are the positions they had, ascending, matching ``ids``."""

    ids: tuple[str, ...]
    indices: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class VoiceProfilesChanged:
    """Voice profiles were added, changed or removed."""

    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ProjectChanged:
    """Project-wide settings changed."""

    fields: frozenset[str]


ProjectEvent = LineChanged | LinesInserted | LinesRemoved | VoiceProfilesChanged | ProjectChanged
Subscriber = Callable[[ProjectEvent], None]


class Project:
    """A dubbing project: the video, its frame rate, lines, voices and characters.

    Args:
        fps: Frame rate (anything :func:`~dubstudio.core.timing.parse_fps` accepts).
        sample_rate: Output sample rate in Hz.
        bit_depth: Output bit depth of exports (16, 24 or 32).
        video_path: The video, relative to the project file when possible.
        lines: Initial lines.
        voices: Initial voice profiles.
        characters: Character name -> default voice profile id (or None).
        settings: Free-form settings (model bundle name, language, ...), JSON-serialisable.
        path: Where the project file lives (None until saved).
    """

    def __init__(
        self,
        *,
        fps: Fraction | str | int | float = DEFAULT_FPS,
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        bit_depth: int = 24,
        video_path: str | None = None,
        lines: Iterable[Line] = (),
        voices: Iterable[VoiceProfile] = (),
        characters: Mapping[str, str | None] | None = None,
        settings: Mapping[str, Any] | None = None,
        path: Path | None = None,
    ) -> None:
        self._fps = parse_fps(fps)
        _check_sample_rate(sample_rate)
        _check_bit_depth(bit_depth)
        self._sample_rate = sample_rate
        self._bit_depth = bit_depth
        self._video_path = video_path
        self._lines: list[Line] = []
        self._by_id: dict[str, Line] = {}
        self._voices: dict[str, VoiceProfile] = {}
        self._characters: dict[str, str | None] = dict(characters or {})
        self._settings: dict[str, Any] = dict(settings or {})
        self._subscribers: list[Subscriber] = []
        self.path = path
        #: Increments on every change; autosave and "modified" indicators compare it.
        self.change_count = 0
        for voice in voices:
            self._voices[voice.id] = voice
        for line in lines:
            self._add_line_quietly(len(self._lines), line)

    # -- observers -----------------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(event)`` after every change; returns a function that unsubscribes."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def _emit(self, event: ProjectEvent) -> None:
        self.change_count += 1
        for callback in list(self._subscribers):
            callback(event)

    # -- project-wide properties ---------------------------------------------------------------

    @property
    def fps(self) -> Fraction:
        """Frame rate (exact)."""
        return self._fps

    @property
    def sample_rate(self) -> int:
        """Output sample rate (Hz)."""
        return self._sample_rate

    @property
    def bit_depth(self) -> int:
        """Export bit depth."""
        return self._bit_depth

    @property
    def video_path(self) -> str | None:
        """The video, relative to the project file when possible."""
        return self._video_path

    @property
    def base_dir(self) -> Path | None:
        """Folder relative paths are resolved against (the project file's folder)."""
        return self.path.parent if self.path is not None else None

    def resolve_path(self, relative: str) -> Path:
        """An absolute path for a path stored in the project."""
        p = Path(relative)
        if p.is_absolute() or self.base_dir is None:
            return p
        return self.base_dir / p

    def set_video_path(self, video_path: str | None) -> None:
        """Change the video."""
        if video_path != self._video_path:
            self._video_path = video_path
            self._emit(ProjectChanged(frozenset({"video_path"})))

    def set_fps(self, fps: Fraction | str | int | float, *, keep_times: bool = True) -> None:
        """Change the frame rate.

        With ``keep_times`` every line keeps its time in seconds and is re-snapped to the new
        frame grid; otherwise lines keep their frame numbers. Every line's revision grows.
        """
        new_fps = parse_fps(fps)
        if new_fps == self._fps:
            return
        old_fps = self._fps
        self._fps = new_fps
        for line in self._lines:
            if keep_times:
                start = seconds_to_frame(Fraction(line.start_frame) / old_fps, new_fps)
                end = max(start + 1, seconds_to_frame(Fraction(line.end_frame) / old_fps, new_fps))
                line.start_frame, line.end_frame = start, end
            line.revision += 1
        self._emit(ProjectChanged(frozenset({"fps"})))
        for line in self._lines:
            self._emit(LineChanged(line.id, frozenset({"start_frame", "end_frame", "revision"})))

    def set_sample_rate(self, sample_rate: int) -> None:
        """Change the output sample rate; every line's revision grows."""
        _check_sample_rate(sample_rate)
        if sample_rate == self._sample_rate:
            return
        self._sample_rate = sample_rate
        for line in self._lines:
            line.revision += 1
        self._emit(ProjectChanged(frozenset({"sample_rate"})))
        for line in self._lines:
            self._emit(LineChanged(line.id, frozenset({"revision"})))

    def set_bit_depth(self, bit_depth: int) -> None:
        """Change the export bit depth (no re-render needed)."""
        _check_bit_depth(bit_depth)
        if bit_depth != self._bit_depth:
            self._bit_depth = bit_depth
            self._emit(ProjectChanged(frozenset({"bit_depth"})))

    @property
    def settings(self) -> Mapping[str, Any]:
        """Free-form settings (read-only view; change with :meth:`set_setting`)."""
        return dict(self._settings)

    def set_setting(self, key: str, value: Any) -> None:
        """Set one free-form setting (must be JSON-serialisable)."""
        if self._settings.get(key, object()) != value:
            self._settings[key] = value
            self._emit(ProjectChanged(frozenset({"settings"})))

    def set_path(self, path: Path | None) -> None:
        """Record where the project file lives (the project file module rebases paths)."""
        if path != self.path:
            self.path = path
            self._emit(ProjectChanged(frozenset({"path"})))

    def map_paths(self, rewrite: Callable[[str], str]) -> None:
        """Rewrite every stored media path (video, reference clips, emotion references, take
        files) with ``rewrite``; used when a project moves. The files stay the same, so no
        revision changes."""
        self._video_path = rewrite(self._video_path) if self._video_path else self._video_path
        for voice_id, voice in list(self._voices.items()):
            clips = tuple(replace(c, path=rewrite(c.path)) for c in voice.clips)
            self._voices[voice_id] = replace(voice, clips=clips)
        for line in self._lines:
            line.emotion = _rewrite_emotion(line.emotion, rewrite)
            line.takes = tuple(
                replace(
                    t,
                    path=rewrite(t.path) if t.path else t.path,
                    emotion=_rewrite_emotion(t.emotion, rewrite),
                )
                for t in line.takes
            )
        self._emit(ProjectChanged(frozenset({"paths"})))

    # -- lines ---------------------------------------------------------------------------------

    @property
    def lines(self) -> tuple[Line, ...]:
        """All lines in order."""
        return tuple(self._lines)

    def __len__(self) -> int:
        return len(self._lines)

    def line(self, line_id: str) -> Line:
        """The line with this id.

        Raises:
            ValidationError: If no line has this id.
        """
        try:
            return self._by_id[line_id]
        except KeyError:
            raise ValidationError(f"No line with id {line_id!r} in this project.") from None

    def has_line(self, line_id: str) -> bool:
        """Whether a line with this id exists."""
        return line_id in self._by_id

    def index_of(self, line_id: str) -> int:
        """Position of a line in the project."""
        return self._lines.index(self.line(line_id))

    def _add_line_quietly(self, index: int, line: Line) -> None:
        if line.id in self._by_id:
            raise ValidationError(f"A line with id {line.id!r} is already in the project.")
        self._lines.insert(index, line)
        self._by_id[line.id] = line

    def insert_lines(self, index: int, lines: Sequence[Line]) -> None:
        """Insert lines starting at ``index`` (clamped to 0..len)."""
        if not lines:
            return
        index = max(0, min(index, len(self._lines)))
        known = self.characters
        for offset, line in enumerate(lines):
            self._add_line_quietly(index + offset, line)
        self._emit(LinesInserted(tuple(range(index, index + len(lines)))))
        if any(line.character and line.character not in known for line in lines):
            self._emit(ProjectChanged(frozenset({"characters"})))

    def append_lines(self, lines: Sequence[Line]) -> None:
        """Insert lines at the end."""
        self.insert_lines(len(self._lines), lines)

    def remove_lines(self, line_ids: Iterable[str]) -> list[tuple[int, Line]]:
        """Remove lines; returns ``(former index, line)`` pairs, ascending, for undo."""
        wanted = set(line_ids)
        for line_id in wanted:
            self.line(line_id)  # raises for unknown ids
        removed = [(i, line) for i, line in enumerate(self._lines) if line.id in wanted]
        if not removed:
            return []
        self._lines = [line for line in self._lines if line.id not in wanted]
        for _, line in removed:
            del self._by_id[line.id]
        self._emit(
            LinesRemoved(tuple(line.id for _, line in removed), tuple(i for i, _ in removed))
        )
        return removed

    def update_line(self, line_id: str, **changes: Any) -> dict[str, Any]:
        """Change attributes of a line, bump its revision if its audio changes, and notify.

        Args:
            line_id: The line.
            **changes: New values of editable attributes (``text``, ``start_frame``,
                ``end_frame``, ``character``, ``voice_id``, ``emotion``, ``fit_mode``,
                ``lead_in_s``, ``lead_out_s``, ``seed``, ``takes``, ``active_take_id``,
                ``locked``, ``notes``).

        Returns:
            The previous values of the attributes that actually changed (for undo).

        Raises:
            ValidationError: On unknown attributes or invalid values (nothing is changed then).
        """
        line = self.line(line_id)
        known_characters = self.characters
        unknown = set(changes) - _EDITABLE_FIELDS
        if unknown:
            raise ValidationError(f"Lines have no editable attribute(s) {sorted(unknown)}.")
        if "fit_mode" in changes:
            changes["fit_mode"] = FitMode(changes["fit_mode"])
        if "takes" in changes:
            changes["takes"] = tuple(changes["takes"])
        changed = {k: v for k, v in changes.items() if getattr(line, k) != v}
        if not changed:
            return {}
        # Validate on a copy first so a bad value leaves the line untouched.
        replace(line, **changed)
        old_budget = _budget_key(self.line_budget(line))
        old_voice = self.effective_voice_id(line)
        previous = {k: getattr(line, k) for k in changed}
        for k, v in changed.items():
            setattr(line, k, v)
        fields_changed = set(changed)
        affects_audio = bool(_AUDIO_FIELDS & fields_changed)
        if "text" in changed and strip_markup(previous["text"]) != line.speech_text:
            affects_audio = True
        if self.effective_voice_id(line) != old_voice:
            affects_audio = True
            fields_changed.add("voice")
        # In natural mode the model picks the length, so a retime alone changes no audio.
        if line.fit_mode is not FitMode.NATURAL and _budget_key(self.line_budget(line)) != (
            old_budget
        ):
            affects_audio = True
        if affects_audio:
            line.revision += 1
            fields_changed.add("revision")
        self._emit(LineChanged(line.id, frozenset(fields_changed)))
        if "character" in changed and (
            line.character not in known_characters or len(self.characters) != len(known_characters)
        ):
            self._emit(ProjectChanged(frozenset({"characters"})))
        return previous

    def line_budget(
        self,
        line: Line,
        *,
        token_rate: Fraction = INDEXTTS2_TOKEN_RATE,
        mel_rate: Fraction = INDEXTTS2_MEL_RATE,
    ) -> LineBudget:
        """The sample, token and mel-frame budget of a line at the project's rates."""
        lead_in, lead_out = line.margins_seconds()
        return line_budget(
            line.slot,
            self._fps,
            self._sample_rate,
            lead_in_seconds=lead_in,
            lead_out_seconds=lead_out,
            token_rate=token_rate,
            mel_rate=mel_rate,
        )

    def lines_in_range(self, start_frame: int, end_frame: int) -> list[Line]:
        """Lines overlapping the frames ``[start_frame, end_frame)``."""
        return [
            line
            for line in self._lines
            if line.start_frame < end_frame and line.end_frame > start_frame
        ]

    # -- voices and characters -----------------------------------------------------------------

    @property
    def voices(self) -> tuple[VoiceProfile, ...]:
        """All voice profiles in the order they were added."""
        return tuple(self._voices.values())

    def voice(self, voice_id: str) -> VoiceProfile:
        """The voice profile with this id."""
        try:
            return self._voices[voice_id]
        except KeyError:
            raise ValidationError(f"No voice profile with id {voice_id!r}.") from None

    def has_voice(self, voice_id: str) -> bool:
        """Whether a voice profile with this id exists."""
        return voice_id in self._voices

    def set_voice(self, voice: VoiceProfile, index: int | None = None) -> VoiceProfile | None:
        """Add or replace a voice profile; returns the previous version (None when new).

        A new profile goes to the end, or to position ``index`` of :attr:`voices`. Lines whose
        audio uses the voice get a new revision when an existing profile changes.
        """
        previous = self._voices.get(voice.id)
        if previous == voice:
            return previous
        if previous is None and index is not None:
            items = list(self._voices.items())
            items.insert(max(0, min(index, len(items))), (voice.id, voice))
            self._voices = dict(items)
        else:
            self._voices[voice.id] = voice
        self._emit(VoiceProfilesChanged((voice.id,)))
        if previous is not None and _voice_sound_differs(previous, voice):
            self._bump_lines(
                line for line in self._lines if self.effective_voice_id(line) == voice.id
            )
        return previous

    def remove_voice(self, voice_id: str) -> VoiceProfile:
        """Remove a voice profile; lines and characters that used it fall back to no voice."""
        voice = self.voice(voice_id)
        affected = [line for line in self._lines if self.effective_voice_id(line) == voice_id]
        del self._voices[voice_id]
        for line in self._lines:
            if line.voice_id == voice_id:
                line.voice_id = None
        chars = [c for c, v in self._characters.items() if v == voice_id]
        for c in chars:
            self._characters[c] = None
        self._emit(VoiceProfilesChanged((voice_id,)))
        if chars:
            self._emit(ProjectChanged(frozenset({"characters"})))
        self._bump_lines(affected, extra=frozenset({"voice_id"}))
        return voice

    @property
    def characters(self) -> Mapping[str, str | None]:
        """Character name -> default voice profile id (a copy).

        Holds every character a line names (None when it has no voice yet) and characters given
        a voice explicitly, even before any line names them.
        """
        result = dict(self._characters)
        for line in self._lines:
            if line.character:
                result.setdefault(line.character, None)
        return result

    def set_character_voice(self, character: str, voice_id: str | None) -> str | None:
        """Give a character a default voice; returns the previous one."""
        if not character:
            raise ValidationError("A character needs a name.")
        if voice_id is not None:
            self.voice(voice_id)
        previous = self._characters.get(character)
        if character in self.characters and previous == voice_id:
            return previous
        if voice_id is None and any(line.character == character for line in self._lines):
            self._characters.pop(character, None)  # still listed through its lines
        else:
            self._characters[character] = voice_id
        self._emit(ProjectChanged(frozenset({"characters"})))
        self._bump_lines(
            line for line in self._lines if line.character == character and line.voice_id is None
        )
        return previous

    def remove_character(self, character: str) -> None:
        """Forget a character that no line uses."""
        if any(line.character == character for line in self._lines):
            raise ValidationError(f"Character '{character}' still has lines; reassign them first.")
        if character in self._characters:
            del self._characters[character]
            self._emit(ProjectChanged(frozenset({"characters"})))

    def effective_voice_id(self, line: Line) -> str | None:
        """The voice a line is spoken with: its own override, else its character's voice."""
        if line.voice_id is not None:
            return line.voice_id
        return self._characters.get(line.character) if line.character else None

    def _bump_lines(self, lines: Iterable[Line], extra: frozenset[str] = frozenset()) -> None:
        for line in list(lines):
            line.revision += 1
            self._emit(LineChanged(line.id, frozenset({"voice", "revision"}) | extra))


def _voice_sound_differs(a: VoiceProfile, b: VoiceProfile) -> bool:
    """Whether two versions of a voice profile render differently (name and notes do not)."""
    return (a.clips, a.language) != (b.clips, b.language)


def _rewrite_emotion(spec: EmotionSpec, rewrite: Callable[[str], str]) -> EmotionSpec:
    if spec.reference_path:
        return replace(spec, reference_path=rewrite(spec.reference_path))
    return spec


def _budget_key(budget: LineBudget) -> tuple[int, int, int, int]:
    """What of a budget shapes the audio: moving a line without changing these keeps its audio."""
    return (budget.speech_samples, budget.lead_in_samples, budget.tokens, budget.mel_frames)


def _check_sample_rate(sample_rate: int) -> None:
    if sample_rate not in SUPPORTED_SAMPLE_RATES:
        raise ValidationError(
            f"Sample rate {sample_rate} Hz is not supported; use one of "
            f"{', '.join(map(str, SUPPORTED_SAMPLE_RATES))}."
        )


def _check_bit_depth(bit_depth: int) -> None:
    if bit_depth not in SUPPORTED_BIT_DEPTHS:
        raise ValidationError(f"Bit depth {bit_depth} is not supported; use 16, 24 or 32.")


def line_field_names() -> frozenset[str]:
    """Names of the attributes :meth:`Project.update_line` accepts."""
    return _EDITABLE_FIELDS


__all__ = [
    "DEFAULT_MARGIN_SECONDS",
    "EMOTION_NAMES",
    "EmotionMode",
    "EmotionSpec",
    "FitMode",
    "Line",
    "LineChanged",
    "LinesInserted",
    "LinesRemoved",
    "Project",
    "ProjectChanged",
    "ProjectEvent",
    "ReferenceClip",
    "Subscriber",
    "Take",
    "VoiceProfile",
    "VoiceProfilesChanged",
    "line_field_names",
    "new_id",
    "strip_markup",
]
