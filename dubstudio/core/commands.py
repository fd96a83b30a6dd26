"""Undoable edit commands over a :class:`~dubstudio.core.model.Project`, and a pure-Python stack.

Every edit -- from the table, the timeline, the inspector or the command line -- is one of these
commands. Each has ``do()``, ``undo()``, a human ``text`` label ("Edit text of line 3") and a
``merge_id`` (``-1``: never merges); commands with the same non-negative ``merge_id`` may fold a
following command into themselves with ``merge_with(other)`` so that typing or dragging becomes a
single undo step. The editor wraps them one-to-one in ``QUndoCommand`` objects (``redo`` ->
``do``, ``id`` -> ``merge_id``, ``mergeWith`` -> ``merge_with``); :class:`UndoStack` is the same
behaviour without Qt, for the command line and the tests.

Commands validate when they are constructed (unknown line, locked line, bad timing) and raise
:class:`~dubstudio.core.errors.ValidationError`, so nothing half-done lands on the stack. Changes
go through the project's methods, so observers are notified and revisions grow as documented in
:mod:`dubstudio.core.model`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from typing import Any

from dubstudio.core.errors import ValidationError
from dubstudio.core.model import EmotionSpec, FitMode, Line, Project, VoiceProfile
from dubstudio.core.timing import Slot, ms_to_frame, seconds_to_frame

logger = logging.getLogger(__name__)

#: merge ids (stable numbers: Qt's QUndoCommand.id() must be an int).
MERGE_EDIT_TEXT = 1
MERGE_RETIME = 2


class Command:
    """Base of every undoable edit.

    Attributes:
        text: Human label for menus ("Undo Edit text of line 3").
        merge_id: Commands with the same id >= 0 may merge; -1 never merges.
    """

    text: str = ""
    merge_id: int = -1

    def do(self) -> None:
        """Apply the edit (also used for redo)."""
        raise NotImplementedError

    def undo(self) -> None:
        """Revert the edit."""
        raise NotImplementedError

    def merge_with(self, other: Command) -> bool:
        """Fold ``other`` (already done) into this command; return whether it was absorbed."""
        return False


def _line_label(project: Project, line_ids: Sequence[str]) -> str:
    if len(line_ids) == 1:
        return f"line {project.index_of(line_ids[0]) + 1}"
    return f"{len(line_ids)} lines"


def _check_unlocked(project: Project, line_ids: Iterable[str]) -> None:
    for line_id in line_ids:
        line = project.line(line_id)
        if line.locked:
            raise ValidationError(
                f"Line {project.index_of(line_id) + 1} is locked; unlock it to change it."
            )


class SetLineFields(Command):
    """Set attributes of one or more lines (the shared machinery of most commands).

    Args:
        project: The project.
        line_ids: Lines to change.
        changes: Attribute values, as :meth:`Project.update_line` takes them.
        text: Label.
        respect_lock: Refuse locked lines.
    """

    def __init__(
        self,
        project: Project,
        line_ids: Sequence[str],
        changes: dict[str, Any],
        text: str,
        *,
        respect_lock: bool = True,
    ) -> None:
        if not line_ids:
            raise ValidationError("Select at least one line.")
        for line_id in line_ids:
            project.line(line_id)
        if respect_lock:
            _check_unlocked(project, line_ids)
        self.project = project
        self.line_ids = tuple(line_ids)
        self.changes = dict(changes)
        self.text = text
        self._previous: dict[str, dict[str, Any]] = {}

    def do(self) -> None:
        done: list[str] = []
        try:
            for line_id in self.line_ids:
                self._previous[line_id] = self.project.update_line(line_id, **self.changes)
                done.append(line_id)
        except Exception:
            for line_id in reversed(done):
                self.project.update_line(line_id, **self._previous.pop(line_id))
            raise

    def undo(self) -> None:
        for line_id in reversed(self.line_ids):
            self.project.update_line(line_id, **self._previous.get(line_id, {}))

    def _absorb(self, other: SetLineFields) -> None:
        """Take over ``other``'s new values; keep our own older values to undo to."""
        for line_id in self.line_ids:
            merged = dict(other._previous.get(line_id, {}))
            merged.update(self._previous.get(line_id, {}))
            self._previous[line_id] = merged
        self.changes = dict(other.changes)


class EditText(SetLineFields):
    """Change a line's text; consecutive edits of the same line merge into one undo step."""

    merge_id = MERGE_EDIT_TEXT

    def __init__(self, project: Project, line_id: str, text: str) -> None:
        super().__init__(
            project, [line_id], {"text": text}, f"Edit text of {_line_label(project, [line_id])}"
        )

    def merge_with(self, other: Command) -> bool:
        if not isinstance(other, EditText) or other.line_ids != self.line_ids:
            return False
        self._absorb(other)
        return True


class RetimeLine(SetLineFields):
    """Move or resize a line to new frames; successive retimes of one line (a drag) merge.

    Args:
        project: The project.
        line_id: The line.
        start_frame: New first frame (None: unchanged).
        end_frame: New end frame (None: unchanged).
    """

    merge_id = MERGE_RETIME

    def __init__(
        self,
        project: Project,
        line_id: str,
        start_frame: int | None = None,
        end_frame: int | None = None,
    ) -> None:
        line = project.line(line_id)
        start = line.start_frame if start_frame is None else start_frame
        end = line.end_frame if end_frame is None else end_frame
        Slot(start, end)  # validates with a message a person can act on
        super().__init__(
            project,
            [line_id],
            {"start_frame": start, "end_frame": end},
            f"Retime {_line_label(project, [line_id])}",
        )

    @classmethod
    def from_ms(cls, project: Project, line_id: str, start_ms: int, end_ms: int) -> RetimeLine:
        """Retime to times in milliseconds, snapped to the project's frame grid."""
        start = ms_to_frame(start_ms, project.fps)
        return cls(project, line_id, start, max(start + 1, ms_to_frame(end_ms, project.fps)))

    @classmethod
    def from_seconds(
        cls, project: Project, line_id: str, start: Fraction | float, end: Fraction | float
    ) -> RetimeLine:
        """Retime to times in seconds, snapped to the project's frame grid."""
        start_frame = seconds_to_frame(Fraction(start), project.fps)
        end_frame = max(start_frame + 1, seconds_to_frame(Fraction(end), project.fps))
        return cls(project, line_id, start_frame, end_frame)

    def merge_with(self, other: Command) -> bool:
        if not isinstance(other, RetimeLine) or other.line_ids != self.line_ids:
            return False
        self._absorb(other)
        return True


class AssignVoice(SetLineFields):
    """Give lines a voice profile override (None: back to the character's voice)."""

    def __init__(self, project: Project, line_ids: Sequence[str], voice_id: str | None) -> None:
        if voice_id is not None:
            project.voice(voice_id)
        super().__init__(
            project,
            line_ids,
            {"voice_id": voice_id},
            f"Set voice of {_line_label(project, line_ids)}",
        )


class AssignCharacter(SetLineFields):
    """Say which character speaks lines."""

    def __init__(self, project: Project, line_ids: Sequence[str], character: str) -> None:
        super().__init__(
            project,
            line_ids,
            {"character": character.strip()},
            f"Set character of {_line_label(project, line_ids)}",
        )


class SetEmotion(SetLineFields):
    """Set lines' emotion."""

    def __init__(self, project: Project, line_ids: Sequence[str], emotion: EmotionSpec) -> None:
        super().__init__(
            project,
            line_ids,
            {"emotion": emotion},
            f"Set emotion of {_line_label(project, line_ids)}",
        )


class SetFitMode(SetLineFields):
    """Set lines' fit mode and, optionally, their margins (seconds)."""

    def __init__(
        self,
        project: Project,
        line_ids: Sequence[str],
        fit_mode: FitMode | str,
        *,
        lead_in_s: float | None = None,
        lead_out_s: float | None = None,
    ) -> None:
        try:
            mode = FitMode(fit_mode)
        except ValueError:
            raise ValidationError(
                f"Unknown fit mode {fit_mode!r}; use {', '.join(m.value for m in FitMode)}."
            ) from None
        changes: dict[str, Any] = {"fit_mode": mode}
        for name, value in (("lead_in_s", lead_in_s), ("lead_out_s", lead_out_s)):
            if value is not None:
                if value < 0:
                    raise ValidationError("Margins cannot be negative.")
                changes[name] = float(value)
        super().__init__(project, line_ids, changes, f"Set fit of {_line_label(project, line_ids)}")


class SetSeed(SetLineFields):
    """Set lines' random seed (None: derived from the line id)."""

    def __init__(self, project: Project, line_ids: Sequence[str], seed: int | None) -> None:
        if seed is not None and not 0 <= seed < 2**32:
            raise ValidationError(f"A seed is a whole number from 0 to {2**32 - 1}.")
        super().__init__(
            project, line_ids, {"seed": seed}, f"Set seed of {_line_label(project, line_ids)}"
        )


class SetLocked(SetLineFields):
    """Lock or unlock lines."""

    def __init__(self, project: Project, line_ids: Sequence[str], locked: bool) -> None:
        verb = "Lock" if locked else "Unlock"
        super().__init__(
            project,
            line_ids,
            {"locked": locked},
            f"{verb} {_line_label(project, line_ids)}",
            respect_lock=False,
        )


class SetCharacterVoice(Command):
    """Give a character a default voice profile."""

    def __init__(self, project: Project, character: str, voice_id: str | None) -> None:
        if voice_id is not None:
            project.voice(voice_id)
        if not character.strip():
            raise ValidationError("A character needs a name.")
        self.project = project
        self.character = character.strip()
        self.voice_id = voice_id
        self.text = f"Set voice of {self.character}"
        self._existed = self.character in project.characters
        self._previous: str | None = None

    def do(self) -> None:
        self._previous = self.project.set_character_voice(self.character, self.voice_id)

    def undo(self) -> None:
        self.project.set_character_voice(self.character, self._previous)
        if not self._existed and not any(
            line.character == self.character for line in self.project.lines
        ):
            self.project.remove_character(self.character)


class SetVoiceProfile(Command):
    """Add a voice profile, or replace the one with the same id."""

    def __init__(self, project: Project, voice: VoiceProfile) -> None:
        self.project = project
        self.voice = voice
        self._previous: VoiceProfile | None = None
        verb = "Edit" if project.has_voice(voice.id) else "Add"
        self.text = f"{verb} voice {voice.name}"

    def do(self) -> None:
        self._previous = self.project.set_voice(self.voice)

    def undo(self) -> None:
        if self._previous is None:
            self.project.remove_voice(self.voice.id)
        else:
            self.project.set_voice(self._previous)


class RemoveVoiceProfile(Command):
    """Remove a voice profile; undo gives it back to the lines and characters that used it."""

    def __init__(self, project: Project, voice_id: str) -> None:
        self.project = project
        self.voice = project.voice(voice_id)
        self.text = f"Remove voice {self.voice.name}"
        self._line_ids: list[str] = []
        self._characters: list[str] = []
        self._index = 0

    def do(self) -> None:
        vid = self.voice.id
        self._index = [v.id for v in self.project.voices].index(vid)
        self._line_ids = [line.id for line in self.project.lines if line.voice_id == vid]
        self._characters = [c for c, v in self.project.characters.items() if v == vid]
        self.project.remove_voice(vid)

    def undo(self) -> None:
        self.project.set_voice(self.voice, index=self._index)
        for character in self._characters:
            self.project.set_character_voice(character, self.voice.id)
        for line_id in self._line_ids:
            self.project.update_line(line_id, voice_id=self.voice.id)


class InsertLines(Command):
    """Insert new lines at an index."""

    def __init__(self, project: Project, index: int, lines: Sequence[Line]) -> None:
        if not lines:
            raise ValidationError("Nothing to insert.")
        for line in lines:
            if project.has_line(line.id):
                raise ValidationError(f"Line {line.id} is already in the project.")
        self.project = project
        self.index = max(0, min(index, len(project)))
        self.lines = list(lines)
        self.text = "Insert line" if len(lines) == 1 else f"Insert {len(lines)} lines"

    def do(self) -> None:
        self.project.insert_lines(self.index, self.lines)

    def undo(self) -> None:
        self.project.remove_lines([line.id for line in self.lines])


def InsertLine(project: Project, index: int, line: Line) -> InsertLines:
    """Insert one line (a convenience spelling of :class:`InsertLines`)."""
    return InsertLines(project, index, [line])


class DeleteLines(Command):
    """Delete lines (they come back at their old places on undo)."""

    def __init__(self, project: Project, line_ids: Sequence[str]) -> None:
        if not line_ids:
            raise ValidationError("Select at least one line to delete.")
        _check_unlocked(project, line_ids)
        self.project = project
        self.line_ids = tuple(line_ids)
        self.text = f"Delete {_line_label(project, line_ids)}"
        self._removed: list[tuple[int, Line]] = []

    def do(self) -> None:
        self._removed = self.project.remove_lines(self.line_ids)

    def undo(self) -> None:
        for index, line in self._removed:  # ascending, so each index is right when reinserted
            self.project.insert_lines(index, [line])


def _split_text(text: str, fraction: float) -> tuple[str, str]:
    """Split text at the word boundary nearest to ``fraction`` of its length."""
    words = text.split(" ")
    if len(words) < 2:
        return text, ""
    target = fraction * len(text)
    best, best_dist = 1, float("inf")
    pos = 0
    for i, word in enumerate(words[:-1], start=1):
        pos += len(word) + 1
        if abs(pos - target) < best_dist:
            best, best_dist = i, abs(pos - target)
    return " ".join(words[:best]).strip(), " ".join(words[best:]).strip()


class SplitLine(Command):
    """Split a line in two at a frame; the second half is a new line with the same settings.

    Args:
        project: The project.
        line_id: The line to split.
        at_frame: First frame of the second half (strictly inside the line).
        text_index: Character index where the text splits; None picks the word boundary at the
            same proportion as ``at_frame``.
    """

    def __init__(
        self, project: Project, line_id: str, at_frame: int, text_index: int | None = None
    ) -> None:
        line = project.line(line_id)
        _check_unlocked(project, [line_id])
        if not line.start_frame < at_frame < line.end_frame:
            raise ValidationError(
                f"Split point must be inside the line (frames {line.start_frame + 1}.."
                f"{line.end_frame - 1}); it is {at_frame}."
            )
        if text_index is None:
            fraction = (at_frame - line.start_frame) / (line.end_frame - line.start_frame)
            first_text, second_text = _split_text(line.text, fraction)
        else:
            first_text, second_text = line.text[:text_index].strip(), line.text[text_index:].strip()
        self.project = project
        self.line_id = line_id
        self.first_changes = {"text": first_text, "end_frame": at_frame}
        self.second = line.copy(new_identity=True)
        self.second.text = second_text
        self.second.start_frame = at_frame
        self.second.takes = ()
        self.second.active_take_id = None
        self.text = f"Split {_line_label(project, [line_id])}"
        self._previous: dict[str, Any] = {}

    def do(self) -> None:
        index = self.project.index_of(self.line_id)
        self._previous = self.project.update_line(self.line_id, **self.first_changes)
        self.project.insert_lines(index + 1, [self.second])

    def undo(self) -> None:
        self.project.remove_lines([self.second.id])
        self.project.update_line(self.line_id, **self._previous)


class MergeLines(Command):
    """Merge a line with the line right after it: texts joined, slot spanning both.

    The first line keeps its id and settings; the second is removed (and restored on undo).
    """

    def __init__(self, project: Project, first_id: str, second_id: str) -> None:
        first, second = project.line(first_id), project.line(second_id)
        _check_unlocked(project, [first_id, second_id])
        if project.index_of(second_id) != project.index_of(first_id) + 1:
            raise ValidationError("Only neighbouring lines can be merged; select two in a row.")
        self.project = project
        self.first_id = first_id
        self.second_id = second_id
        joined = " ".join(t for t in (first.text.strip(), second.text.strip()) if t)
        self.first_changes = {
            "text": joined,
            "start_frame": min(first.start_frame, second.start_frame),
            "end_frame": max(first.end_frame, second.end_frame),
        }
        self.text = (
            f"Merge lines {project.index_of(first_id) + 1} and {project.index_of(second_id) + 1}"
        )
        self._removed: list[tuple[int, Line]] = []
        self._previous: dict[str, Any] = {}

    def do(self) -> None:
        self._removed = self.project.remove_lines([self.second_id])
        self._previous = self.project.update_line(self.first_id, **self.first_changes)

    def undo(self) -> None:
        self.project.update_line(self.first_id, **self._previous)
        for index, line in self._removed:
            self.project.insert_lines(index, [line])


class MacroCommand(Command):
    """Several commands as one undo step (done in order, undone in reverse)."""

    def __init__(self, text: str, commands: Sequence[Command]) -> None:
        self.text = text
        self.commands = list(commands)
        self._done = 0

    def do(self) -> None:
        self._done = 0
        try:
            for command in self.commands:
                command.do()
                self._done += 1
        except Exception:
            for command in reversed(self.commands[: self._done]):
                command.undo()
            raise

    def undo(self) -> None:
        for command in reversed(self.commands):
            command.undo()


class UndoStack:
    """A linear undo history, the pure-Python twin of ``QUndoStack``.

    Args:
        limit: Most commands kept (0: unlimited); the oldest are forgotten first.
    """

    def __init__(self, limit: int = 0) -> None:
        self._commands: list[Command] = []
        self._index = 0  # commands[:index] are done
        self._clean_index: int | None = 0
        self.limit = limit
        self._listeners: list[Callable[[], None]] = []

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` whenever the stack changes; returns an unsubscribe function."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def _changed(self) -> None:
        for callback in list(self._listeners):
            callback()

    def push(self, command: Command) -> None:
        """Do ``command`` and record it (merging into the previous one when both agree)."""
        command.do()
        del self._commands[self._index :]
        if self._clean_index is not None and self._clean_index > self._index:
            self._clean_index = None
        top = self._commands[-1] if self._commands else None
        if (
            top is not None
            and command.merge_id >= 0
            and top.merge_id == command.merge_id
            and self._clean_index != self._index
            and top.merge_with(command)
        ):
            self._changed()
            return
        self._commands.append(command)
        self._index += 1
        if self.limit and len(self._commands) > self.limit:
            drop = len(self._commands) - self.limit
            del self._commands[:drop]
            self._index -= drop
            if self._clean_index is not None:
                self._clean_index = self._clean_index - drop if self._clean_index >= drop else None
        self._changed()

    def undo(self) -> None:
        """Undo the last done command (no-op when there is none)."""
        if self._index == 0:
            return
        self._index -= 1
        self._commands[self._index].undo()
        self._changed()

    def redo(self) -> None:
        """Redo the next undone command (no-op when there is none)."""
        if self._index == len(self._commands):
            return
        self._commands[self._index].do()
        self._index += 1
        self._changed()

    @property
    def can_undo(self) -> bool:
        return self._index > 0

    @property
    def can_redo(self) -> bool:
        return self._index < len(self._commands)

    @property
    def undo_text(self) -> str:
        return self._commands[self._index - 1].text if self.can_undo else ""

    @property
    def redo_text(self) -> str:
        return self._commands[self._index].text if self.can_redo else ""

    @property
    def index(self) -> int:
        """Number of commands currently done."""
        return self._index

    def __len__(self) -> int:
        return len(self._commands)

    def set_clean(self) -> None:
        """Mark the current state as saved."""
        self._clean_index = self._index
        self._changed()

    @property
    def is_clean(self) -> bool:
        """Whether the project is as it was when last marked clean (saved)."""
        return self._clean_index == self._index

    def clear(self) -> None:
        """Forget the history (the project keeps its current state)."""
        self._commands.clear()
        self._index = 0
        self._clean_index = 0
        self._changed()
