"""The one place the editor builds undoable edit commands.

Views never change the project; they call the main window, which asks this module for a command
object (``do()``, ``undo()``, ``text``) and pushes it on the undo stack. The commands come from
`dubstudio.core.commands` when it provides them; the small fallbacks below use only the
project's own public methods, so the same edits stay undoable either way.
"""

from __future__ import annotations

import importlib
from typing import Any

from dubstudio.core.errors import ValidationError
from dubstudio.core.model import Line, Project, VoiceProfile


def _core(name: str) -> Any:
    """A command class from `dubstudio.core.commands`, or None when it has none by that name."""
    try:
        module = importlib.import_module("dubstudio.core.commands")
    except ImportError:
        return None
    return getattr(module, name, None)


class _UpdateLine:
    def __init__(self, project: Project, line_id: str, changes: dict[str, Any], text: str) -> None:
        self.project, self.line_id, self.changes, self.text = project, line_id, changes, text
        self._previous: dict[str, Any] = {}

    def do(self) -> None:
        self._previous = self.project.update_line(self.line_id, **self.changes)

    def undo(self) -> None:
        if self._previous:
            self.project.update_line(self.line_id, **self._previous)


class _InsertLines:
    def __init__(self, project: Project, index: int, lines: list[Line], text: str) -> None:
        self.project, self.index, self.lines, self.text = project, index, lines, text

    def do(self) -> None:
        self.project.insert_lines(self.index, self.lines)

    def undo(self) -> None:
        self.project.remove_lines([line.id for line in self.lines])


class _RemoveLines:
    def __init__(self, project: Project, line_ids: list[str], text: str) -> None:
        self.project, self.line_ids, self.text = project, line_ids, text
        self._removed: list[tuple[int, Line]] = []

    def do(self) -> None:
        self._removed = self.project.remove_lines(self.line_ids)

    def undo(self) -> None:
        for index, line in self._removed:
            self.project.insert_lines(index, [line])


class _Sequence:
    """Several commands as one undo step (undone in reverse order)."""

    def __init__(self, parts: list[Any], text: str) -> None:
        self.parts, self.text = parts, text

    def do(self) -> None:
        done = []
        try:
            for part in self.parts:
                part.do()
                done.append(part)
        except Exception:
            for part in reversed(done):
                part.undo()
            raise

    def undo(self) -> None:
        for part in reversed(self.parts):
            part.undo()


class _SetVoice:
    def __init__(self, project: Project, voice: VoiceProfile, text: str) -> None:
        self.project, self.voice, self.text = project, voice, text
        self._previous: VoiceProfile | None = None

    def do(self) -> None:
        self._previous = self.project.set_voice(self.voice)

    def undo(self) -> None:
        if self._previous is None:
            self.project.remove_voice(self.voice.id)
        else:
            self.project.set_voice(self._previous)


class _RemoveVoice:
    def __init__(self, project: Project, voice_id: str, text: str) -> None:
        self.project, self.voice_id, self.text = project, voice_id, text
        self._voice: VoiceProfile | None = None
        self._lines: dict[str, str | None] = {}
        self._characters: dict[str, str | None] = {}

    def do(self) -> None:
        self._lines = {
            line.id: line.voice_id for line in self.project.lines if line.voice_id == self.voice_id
        }
        self._characters = {c: v for c, v in self.project.characters.items() if v == self.voice_id}
        self._voice = self.project.remove_voice(self.voice_id)

    def undo(self) -> None:
        assert self._voice is not None
        self.project.set_voice(self._voice)
        for character, voice_id in self._characters.items():
            self.project.set_character_voice(character, voice_id)
        for line_id, voice_id in self._lines.items():
            self.project.update_line(line_id, voice_id=voice_id)


class _SetCharacterVoice:
    def __init__(self, project: Project, character: str, voice_id: str | None, text: str) -> None:
        self.project, self.character, self.voice_id, self.text = project, character, voice_id, text
        self._previous: str | None = None

    def do(self) -> None:
        self._previous = self.project.set_character_voice(self.character, self.voice_id)

    def undo(self) -> None:
        self.project.set_character_voice(self.character, self._previous)


def _number(project: Project, line_id: str) -> int:
    return project.index_of(line_id) + 1


def update_line(project: Project, line_id: str, changes: dict[str, Any]) -> Any:
    """Command: change attributes of one line."""
    names = ", ".join(sorted(changes))
    return _UpdateLine(
        project, line_id, dict(changes), f"Edit {names} of line {_number(project, line_id)}"
    )


def retime_line(project: Project, line_id: str, start_frame: int, end_frame: int) -> Any:
    """Command: move or trim a line to the frames ``[start_frame, end_frame)``."""
    line = project.line(line_id)
    verb = "Move" if end_frame - start_frame == line.slot.n_frames else "Trim"
    return _UpdateLine(
        project, line_id, {"start_frame": start_frame, "end_frame": end_frame},
        f"{verb} line {_number(project, line_id)}",
    )  # fmt: skip


def insert_line(project: Project, index: int, line: Line) -> Any:
    """Command: insert ``line`` at ``index``."""
    return _InsertLines(project, index, [line], f"Insert line {index + 1}")


def remove_lines(project: Project, line_ids: list[str]) -> Any:
    """Command: delete lines."""
    return _RemoveLines(project, list(line_ids), f"Delete {len(line_ids)} line(s)")


def split_line(project: Project, line_id: str, frame: int) -> Any:
    """Command: split a line at ``frame``; the text is divided at the word nearest the cut."""
    line = project.line(line_id)
    if not line.start_frame < frame < line.end_frame:
        raise ValidationError("Put the playhead inside the line to split it there.")
    words = line.text.split()
    share = (frame - line.start_frame) / line.slot.n_frames
    cut = max(1, min(len(words) - 1, round(len(words) * share))) if len(words) > 1 else 1
    first_text = " ".join(words[:cut]) or line.text
    second_text = " ".join(words[cut:]) or line.text
    second = Line(
        second_text, frame, line.end_frame, character=line.character, voice_id=line.voice_id,
        emotion=line.emotion, fit_mode=line.fit_mode, lead_in_s=line.lead_in_s,
        lead_out_s=line.lead_out_s,
    )  # fmt: skip
    index = project.index_of(line_id)
    return _Sequence(
        [
            _UpdateLine(project, line_id, {"text": first_text, "end_frame": frame}, ""),
            _InsertLines(project, index + 1, [second], ""),
        ],
        f"Split line {index + 1}",
    )


def merge_lines(project: Project, first_id: str, second_id: str) -> Any:
    """Command: merge ``second_id`` into ``first_id`` (texts joined, slot spans both)."""
    first, second = project.line(first_id), project.line(second_id)
    return _Sequence(
        [
            _RemoveLines(project, [second_id], ""),
            _UpdateLine(
                project, first_id,
                {"text": f"{first.text} {second.text}",
                 "end_frame": max(first.end_frame, second.end_frame)},
                "",
            ),
        ],
        f"Merge lines {_number(project, first_id)} and {_number(project, second_id)}",
    )  # fmt: skip


def set_voice(project: Project, voice: VoiceProfile) -> Any:
    """Command: add or replace a voice profile."""
    verb = "Edit" if any(v.id == voice.id for v in project.voices) else "Add"
    return _SetVoice(project, voice, f"{verb} voice '{voice.name}'")


def remove_voice(project: Project, voice_id: str) -> Any:
    """Command: remove a voice profile (lines and characters fall back to no voice)."""
    return _RemoveVoice(project, voice_id, f"Remove voice '{project.voice(voice_id).name}'")


def set_character_voice(project: Project, character: str, voice_id: str | None) -> Any:
    """Command: give a character its default voice."""
    return _SetCharacterVoice(project, character, voice_id, f"Voice of {character}")
