"""The one place the editor builds undoable edit commands.

Views never change the project; they call the main window, which asks this module for a command
(``do()``, ``undo()``, ``text``) from `dubstudio.core.commands` and pushes it on the undo stack.
"""

from __future__ import annotations

from typing import Any

from dubstudio.core import commands
from dubstudio.core.model import Line, Project, VoiceProfile


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
    return commands.SetVoiceProfile(project, voice)


def remove_voice(project: Project, voice_id: str) -> Any:
    """Command: remove a voice profile (lines and characters fall back to no voice)."""
    return commands.RemoveVoiceProfile(project, voice_id)


def set_character_voice(project: Project, character: str, voice_id: str | None) -> Any:
    """Command: give a character its default voice."""
    return commands.SetCharacterVoice(project, character, voice_id)
