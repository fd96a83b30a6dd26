"""The one place the editor builds undoable edit commands.

Views never change the project; they call the main window, which asks this module for a command
(``do()``, ``undo()``, ``text``) and pushes it on the undo stack. Line edits, inserts, deletes,
splits, merges and character voices are `dubstudio.core.commands`; adding, replacing and
removing voice profiles has no core command yet, so the two small commands below do it through
the project's public methods.
"""

from __future__ import annotations

from typing import Any

from dubstudio.core import commands
from dubstudio.core.model import Line, Project, VoiceProfile


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


def update_line(project: Project, line_id: str, changes: dict[str, Any]) -> Any:
    """Command: change attributes of one line (the specific core command when there is one)."""
    keys = set(changes)
    if keys == {"text"}:
        return commands.EditText(project, line_id, changes["text"])
    if keys <= {"start_frame", "end_frame"}:
        return commands.RetimeLine(
            project, line_id, changes.get("start_frame"), changes.get("end_frame")
        )
    if keys == {"emotion"}:
        return commands.SetEmotion(project, [line_id], changes["emotion"])
    if keys == {"voice_id"}:
        return commands.AssignVoice(project, [line_id], changes["voice_id"])
    if keys == {"character"}:
        return commands.AssignCharacter(project, [line_id], changes["character"])
    if keys == {"seed"}:
        return commands.SetSeed(project, [line_id], changes["seed"])
    if keys and keys <= {"fit_mode", "lead_in_s", "lead_out_s"}:
        line = project.line(line_id)
        return commands.SetFitMode(
            project,
            [line_id],
            changes.get("fit_mode", line.fit_mode),
            lead_in_s=changes.get("lead_in_s"),
            lead_out_s=changes.get("lead_out_s"),
        )
    number = project.index_of(line_id) + 1
    # Choosing another take changes what plays, not the line: allowed on locked lines too.
    respect_lock = not keys <= {"active_take_id"}
    return commands.SetLineFields(
        project,
        [line_id],
        changes,
        f"Edit {', '.join(sorted(keys))} of line {number}",
        respect_lock=respect_lock,
    )


def retime_line(project: Project, line_id: str, start_frame: int, end_frame: int) -> Any:
    """Command: move or trim a line to the frames ``[start_frame, end_frame)``."""
    return commands.RetimeLine(project, line_id, start_frame, end_frame)


def insert_lines(project: Project, index: int, lines: list[Line]) -> Any:
    """Command: insert lines at ``index`` (one undo step)."""
    return commands.InsertLines(project, index, lines)


def insert_line(project: Project, index: int, line: Line) -> Any:
    """Command: insert ``line`` at ``index``."""
    return commands.InsertLines(project, index, [line])


def remove_lines(project: Project, line_ids: list[str]) -> Any:
    """Command: delete lines."""
    return commands.DeleteLines(project, line_ids)


def split_line(project: Project, line_id: str, frame: int) -> Any:
    """Command: split a line at ``frame``."""
    return commands.SplitLine(project, line_id, frame)


def merge_lines(project: Project, first_id: str, second_id: str) -> Any:
    """Command: merge two neighbouring lines."""
    return commands.MergeLines(project, first_id, second_id)


def set_voice(project: Project, voice: VoiceProfile) -> Any:
    """Command: add or replace a voice profile."""
    verb = "Edit" if any(v.id == voice.id for v in project.voices) else "Add"
    return _SetVoice(project, voice, f"{verb} voice '{voice.name}'")


def remove_voice(project: Project, voice_id: str) -> Any:
    """Command: remove a voice profile (lines and characters fall back to no voice)."""
    return _RemoveVoice(project, voice_id, f"Remove voice '{project.voice(voice_id).name}'")


def set_character_voice(project: Project, character: str, voice_id: str | None) -> Any:
    """Command: give a character its default voice."""
    return commands.SetCharacterVoice(project, character, voice_id)
