"""Tests of undoable edit commands: each edit, and do/undo/redo invariants as properties."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dubstudio.core.commands import (
    AssignCharacter,
    AssignVoice,
    Command,
    DeleteLines,
    EditText,
    InsertLine,
    MergeLines,
    RemoveVoiceProfile,
    RetimeLine,
    SetCharacterVoice,
    SetEmotion,
    SetFitMode,
    SetLocked,
    SetSeed,
    SetVoiceProfile,
    SplitLine,
    UndoStack,
)
from dubstudio.core.errors import ValidationError
from dubstudio.core.model import EmotionSpec, FitMode, Line, Project, VoiceProfile
from dubstudio.core.projectfile import project_to_json


def make_project() -> Project:
    project = Project(
        fps=25,
        lines=[
            Line("One two three four", 25, 100, character="Maya"),
            Line("Five six", 110, 150, character="Otto"),
            Line("Seven", 160, 200, character="Maya"),
        ],
        voices=[VoiceProfile("v1", "Voice one"), VoiceProfile("v2", "Voice two")],
    )
    return project


def state(project: Project) -> dict[str, Any]:
    """Everything a user sees, without revisions (which only grow)."""
    data = project_to_json(project)
    for line in data["lines"]:
        del line["revision"]
    data.pop("app_version")
    return data


def test_edit_text_merges_consecutive_typing() -> None:
    project = make_project()
    stack = UndoStack()
    line = project.lines[0]
    stack.push(EditText(project, line.id, "O"))
    stack.push(EditText(project, line.id, "On"))
    stack.push(EditText(project, line.id, "One"))
    assert len(stack) == 1
    assert stack.undo_text == "Edit text of line 1"
    stack.undo()
    assert line.text == "One two three four"
    stack.redo()
    assert line.text == "One"


def test_retime_snaps_and_validates() -> None:
    project = make_project()
    line = project.lines[0]
    cmd = RetimeLine.from_ms(project, line.id, 1010, 2030)  # 25 fps: 25.25 -> 25, 50.75 -> 51
    cmd.do()
    assert (line.start_frame, line.end_frame) == (25, 51)
    cmd.undo()
    assert (line.start_frame, line.end_frame) == (25, 100)
    with pytest.raises(ValidationError, match="end after it starts"):
        RetimeLine(project, line.id, 50, 40)


def test_split_and_merge_round_trip() -> None:
    project = make_project()
    stack = UndoStack()
    original = state(project)
    first = project.lines[0]
    stack.push(SplitLine(project, first.id, 60))
    assert len(project) == 4
    a, b = project.lines[0], project.lines[1]
    assert (a.end_frame, b.start_frame, b.end_frame) == (60, 60, 100)
    assert a.text == "One two" and b.text == "three four"
    assert b.character == "Maya" and b.id != a.id
    stack.push(MergeLines(project, a.id, b.id))
    assert len(project) == 3
    assert project.lines[0].text == "One two three four"
    assert (project.lines[0].start_frame, project.lines[0].end_frame) == (25, 100)
    stack.undo()
    stack.undo()
    assert state(project) == original
    with pytest.raises(ValidationError, match="inside the line"):
        SplitLine(project, first.id, 25)
    with pytest.raises(ValidationError, match="neighbouring"):
        MergeLines(project, project.lines[0].id, project.lines[2].id)


def test_locked_lines_refuse_audio_edits() -> None:
    project = make_project()
    line = project.lines[0]
    SetLocked(project, [line.id], True).do()
    with pytest.raises(ValidationError, match="Line 1 is locked"):
        EditText(project, line.id, "nope")
    with pytest.raises(ValidationError, match="locked"):
        DeleteLines(project, [line.id])
    SetLocked(project, [line.id], False).do()
    EditText(project, line.id, "yes").do()
    assert line.text == "yes"


def test_failed_multi_line_command_rolls_back() -> None:
    project = make_project()
    ids = [line.id for line in project.lines]
    # Line 3 starts at 160: moving every line's end to 150 fails on it.
    cmd = SetLineFieldsEnd(project, ids)
    with pytest.raises(ValidationError):
        cmd.do()
    assert [line.end_frame for line in project.lines] == [100, 150, 200]


def SetLineFieldsEnd(project: Project, ids: list[str]) -> Command:
    from dubstudio.core.commands import SetLineFields

    return SetLineFields(project, ids, {"end_frame": 150}, "test")


def test_undo_stack_clean_state_and_limit() -> None:
    project = make_project()
    stack = UndoStack(limit=2)
    events: list[int] = []
    stack.subscribe(lambda: events.append(stack.index))
    assert stack.is_clean
    ids = [line.id for line in project.lines]
    stack.push(SetSeed(project, ids[:1], 1))
    assert not stack.is_clean
    stack.set_clean()
    stack.push(SetSeed(project, ids[:1], 2))
    stack.push(SetSeed(project, ids[:1], 3))
    assert len(stack) == 2  # oldest forgotten
    stack.undo()
    stack.undo()
    assert not stack.can_undo
    assert project.lines[0].seed == 1
    assert events


OPS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "text",
                "retime",
                "split",
                "merge",
                "insert",
                "delete",
                "voice",
                "character",
                "emotion",
                "fit",
                "seed",
                "charvoice",
                "addvoice",
                "rmvoice",
                "undo",
                "redo",
            ]
        ),
        st.integers(0, 1000),
    ),
    min_size=1,
    max_size=25,
)


def build_command(project: Project, op: str, n: int) -> Command | None:
    lines = project.lines
    if not lines and op not in ("insert",):
        return None
    line = lines[n % len(lines)] if lines else None
    try:
        if op == "text" and line:
            return EditText(project, line.id, f"text {n}")
        if op == "retime" and line:
            start = n % 300
            return RetimeLine(project, line.id, start, start + 1 + n % 97)
        if op == "split" and line and line.end_frame - line.start_frame > 1:
            return SplitLine(project, line.id, line.start_frame + 1)
        if op == "merge" and line and len(lines) > 1:
            i = n % (len(lines) - 1)
            return MergeLines(project, lines[i].id, lines[i + 1].id)
        if op == "insert":
            return InsertLine(project, n % (len(lines) + 1), Line(f"new {n}", n, n + 10))
        if op == "delete" and line:
            return DeleteLines(project, [line.id])
        if op == "voice" and line:
            return AssignVoice(project, [line.id], ["v1", "v2", None][n % 3])
        if op == "character" and line:
            return AssignCharacter(project, [line.id], ["Maya", "Otto", "Zed"][n % 3])
        if op == "emotion" and line:
            return SetEmotion(project, [line.id], EmotionSpec.from_values(happy=(n % 10) / 10))
        if op == "fit" and line:
            return SetFitMode(project, [line.id], list(FitMode)[n % 3], lead_in_s=(n % 5) / 10)
        if op == "seed" and line:
            return SetSeed(project, [line.id], n)
        if op == "addvoice":
            name = f"Voice {n % 4}"
            return SetVoiceProfile(project, VoiceProfile(f"v{n % 4}", name, language="en"))
        if op == "rmvoice" and project.voices:
            return RemoveVoiceProfile(project, project.voices[n % len(project.voices)].id)
        if op == "charvoice":
            return SetCharacterVoice(project, ["Maya", "Otto"][n % 2], ["v1", "v2", None][n % 3])
    except ValidationError:
        return None
    return None


@settings(max_examples=100, deadline=None)
@given(ops=OPS)
def test_do_undo_redo_invariants(ops: list[tuple[str, int]]) -> None:
    """Undoing everything restores the start; redoing everything restores the end; revisions
    never decrease; every intermediate state is reproduced exactly on undo."""
    project = make_project()
    stack = UndoStack()
    history = [state(project)]
    max_revision: dict[str, int] = {}
    for op, n in ops:
        if op == "undo":
            stack.undo()
        elif op == "redo":
            stack.redo()
        else:
            cmd = build_command(project, op, n)
            if cmd is None:
                continue
            stack.push(cmd)
        for line in project.lines:
            assert line.revision >= max_revision.get(line.id, 0)
            max_revision[line.id] = line.revision
    # Replay: undo step by step, then redo step by step, comparing snapshots.
    done = stack.index
    snapshots = [state(project)]
    for _ in range(done):
        stack.undo()
        snapshots.append(state(project))
    assert snapshots[-1] == history[0]
    for expected in reversed(snapshots[:-1]):
        stack.redo()
        assert state(project) == expected
    ids = [line.id for line in project.lines]
    assert len(ids) == len(set(ids))


def test_merge_after_a_no_op_edit_still_undoes_to_the_start() -> None:
    project = make_project()
    stack = UndoStack()
    line = project.lines[1]
    stack.push(EditText(project, line.id, "Five six"))  # no change
    stack.push(EditText(project, line.id, "Five sixty"))  # merges into the no-op
    assert len(stack) == 1
    stack.undo()
    assert line.text == "Five six"


def test_voice_profile_commands_restore_order_and_users() -> None:
    project = make_project()
    stack = UndoStack()
    line = project.lines[0]
    stack.push(AssignVoice(project, [line.id], "v1"))
    stack.push(SetCharacterVoice(project, "Otto", "v1"))
    before = state(project)
    stack.push(RemoveVoiceProfile(project, "v1"))
    assert line.voice_id is None and project.characters["Otto"] is None
    stack.undo()
    assert state(project) == before
    assert [v.id for v in project.voices] == ["v1", "v2"]
    stack.push(SetVoiceProfile(project, VoiceProfile("v3", "Third")))
    assert stack.undo_text == "Add voice Third"
    stack.undo()
    assert not project.has_voice("v3")
