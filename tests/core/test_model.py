"""Tests of the domain model: validation, change events and revisions."""

from __future__ import annotations

from fractions import Fraction

import pytest

from dubstudio.core.errors import ValidationError
from dubstudio.core.model import (
    EMOTION_NAMES,
    EmotionMode,
    EmotionSpec,
    FitMode,
    Line,
    LineChanged,
    LinesInserted,
    LinesRemoved,
    Project,
    ProjectChanged,
    ProjectEvent,
    ReferenceClip,
    VoiceProfile,
    VoiceProfilesChanged,
    strip_markup,
)


def make_project() -> tuple[Project, list[ProjectEvent]]:
    project = Project(
        fps=25,
        lines=[
            Line("<i>Hello</i> there.", 25, 75, character="Maya"),
            Line("{\\i1}General{\\i0} Kenobi!", 80, 130, character="Otto"),
        ],
    )
    events: list[ProjectEvent] = []
    project.subscribe(events.append)
    return project, events


def test_emotion_names_follow_indextts2_order() -> None:
    assert EMOTION_NAMES == (
        "happy",
        "angry",
        "sad",
        "afraid",
        "disgusted",
        "melancholic",
        "surprised",
        "calm",
    )


def test_emotion_spec_validates_with_messages() -> None:
    spec = EmotionSpec.from_values(happy=0.8, calm=0.2, alpha=0.6)
    assert spec.mode is EmotionMode.SLIDERS
    assert spec.vector[0] == 0.8 and spec.vector[7] == 0.2
    assert spec.as_dict()["happy"] == 0.8
    with pytest.raises(ValidationError, match="'sad' must be between 0 and 1"):
        EmotionSpec(mode=EmotionMode.SLIDERS, vector=(0, 0, 1.5, 0, 0, 0, 0, 0))
    with pytest.raises(ValidationError, match="8 values"):
        EmotionSpec(vector=(0.1,))
    with pytest.raises(ValidationError, match="Unknown emotion"):
        EmotionSpec.from_values(joyful=1.0)
    with pytest.raises(ValidationError, match="reference clip"):
        EmotionSpec(mode=EmotionMode.REFERENCE_AUDIO)


def test_markup_is_kept_in_text_and_stripped_for_speech() -> None:
    project, _ = make_project()
    first, second = project.lines
    assert first.text == "<i>Hello</i> there."
    assert first.speech_text == "Hello there."
    assert second.speech_text == "General Kenobi!"
    assert strip_markup("Line one\\NLine two<br/>") == "Line one Line two"


def test_characters_are_collected_from_lines() -> None:
    project, _ = make_project()
    assert project.characters == {"Maya": None, "Otto": None}


def test_text_edit_bumps_revision_only_when_speech_changes() -> None:
    project, events = make_project()
    line = project.lines[0]
    previous = project.update_line(line.id, text="Hello there.")  # only markup removed
    assert previous == {"text": "<i>Hello</i> there."}
    assert line.revision == 0
    assert events == [LineChanged(line.id, frozenset({"text"}))]
    project.update_line(line.id, text="Hello again.")
    assert line.revision == 1
    assert events[-1] == LineChanged(line.id, frozenset({"text", "revision"}))
    assert project.update_line(line.id, text="Hello again.") == {}  # no change, no event
    assert len(events) == 2


def test_retime_bumps_revision_when_budget_changes() -> None:
    project, events = make_project()
    line = project.lines[0]
    project.update_line(line.id, start_frame=30, end_frame=80)  # moved, same length at 25 fps
    assert line.revision == 0
    project.update_line(line.id, end_frame=90)
    assert line.revision == 1
    # In natural mode the slot does not shape the audio.
    project.update_line(line.id, fit_mode=FitMode.NATURAL)
    assert line.revision == 2
    project.update_line(line.id, end_frame=100)
    assert line.revision == 2
    assert all(isinstance(e, LineChanged) for e in events)


def test_invalid_update_leaves_line_untouched() -> None:
    project, events = make_project()
    line = project.lines[0]
    with pytest.raises(ValidationError, match="end after it starts"):
        project.update_line(line.id, end_frame=10)
    with pytest.raises(ValidationError, match="no editable"):
        project.update_line(line.id, revision=5)
    assert (line.start_frame, line.end_frame, line.revision) == (25, 75, 0)
    assert events == []


def test_voice_changes_reach_lines_through_characters() -> None:
    project, events = make_project()
    maya, otto = project.lines
    voice = VoiceProfile("v1", "Maya's voice", clips=(ReferenceClip("voices/maya.wav"),))
    project.set_voice(voice)
    assert events[-1] == VoiceProfilesChanged(("v1",))
    project.set_character_voice("Maya", "v1")
    assert project.effective_voice_id(maya) == "v1"
    assert maya.revision == 1 and otto.revision == 0
    # Renaming the voice does not change the sound; a new clip does.
    project.set_voice(VoiceProfile("v1", "Maya", clips=voice.clips))
    assert maya.revision == 1
    project.set_voice(VoiceProfile("v1", "Maya", clips=(ReferenceClip("voices/maya2.wav"),)))
    assert maya.revision == 2
    # Giving the line its own override equal to the character's voice changes nothing audible.
    project.update_line(maya.id, voice_id="v1")
    assert maya.revision == 2
    project.remove_voice("v1")
    assert maya.voice_id is None and project.characters["Maya"] is None
    assert maya.revision == 3
    assert ProjectChanged(frozenset({"characters"})) in events


def test_insert_and_remove_emit_indices() -> None:
    project, events = make_project()
    extra = Line("New", 200, 220)
    project.insert_lines(1, [extra])
    assert events[-1] == LinesInserted((1,))
    assert project.index_of(extra.id) == 1
    removed = project.remove_lines([extra.id, project.lines[0].id])
    assert [i for i, _ in removed] == [0, 1]
    assert isinstance(events[-1], LinesRemoved)
    assert events[-1].indices == (0, 1)
    assert len(project) == 1
    with pytest.raises(ValidationError, match="No line with id"):
        project.line(extra.id)
    with pytest.raises(ValidationError, match="already in the project"):
        project.insert_lines(0, [project.lines[0]])


def test_fps_change_keeps_times_and_bumps_revisions() -> None:
    project, _ = make_project()
    line = project.lines[0]
    project.set_fps("30000/1001")
    assert project.fps == Fraction(30000, 1001)
    # 1 s at 25 fps is frame 30 at 29.97 (30 * 1.001 s = 1.001 s is closest).
    assert line.start_frame == 30
    assert line.revision == 1
    project.set_sample_rate(44100)
    assert line.revision == 2
    with pytest.raises(ValidationError, match="Sample rate"):
        project.set_sample_rate(12345)


def test_unsubscribe_stops_events() -> None:
    project = Project()
    seen: list[ProjectEvent] = []
    unsubscribe = project.subscribe(seen.append)
    project.append_lines([Line("a", 0, 10)])
    unsubscribe()
    project.append_lines([Line("b", 10, 20)])
    assert len(seen) == 1
    assert project.change_count == 2
