"""Tests of .dubproj files: round trip, relative paths, atomic save, autosave, validation,
migration."""

from __future__ import annotations

import json
import os
import time
from fractions import Fraction
from pathlib import Path

import pytest

from dubstudio.core.errors import ProjectFileError
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
from dubstudio.core.projectfile import (
    SCHEMA_VERSION,
    autosave_path,
    dumps,
    load_project,
    missing_media,
    project_to_json,
    recovery_candidate,
    save_project,
    write_autosave,
)


def sample_project(base: Path) -> Project:
    (base / "media").mkdir(parents=True, exist_ok=True)
    (base / "media" / "clip.mp4").write_bytes(b"video")
    (base / "media" / "maya.wav").write_bytes(b"wav")
    emotion = EmotionSpec(EmotionMode.REFERENCE_AUDIO, reference_path="media/maya.wav", alpha=0.5)
    take = Take(
        id="t1",
        cache_key="abc",
        sample_rate=48000,
        n_samples=96000,
        seed=7,
        emotion=emotion,
        budget_samples=96000,
        created="2026-11-23T21:00:00+00:00",
        model_identity="sha256:1234",
        path="takes/t1.wav",
    )
    project = Project(
        fps="30000/1001",
        video_path="media/clip.mp4",
        lines=[
            Line("Héllo <i>there</i>", 30, 90, character="Maya", emotion=emotion, takes=(take,)),
            Line("Bye", 100, 160, character="Otto", fit_mode=FitMode.NATURAL, seed=3),
        ],
        voices=[VoiceProfile("v1", "Maya", clips=(ReferenceClip("media/maya.wav", 0.5, 3.0),))],
        characters={"Maya": "v1"},
        settings={"model": "default"},
        path=base / "p.dubproj",
    )
    return project


def test_round_trip_is_lossless(tmp_path: Path) -> None:
    project = sample_project(tmp_path)
    saved = save_project(project)
    loaded = load_project(saved)
    assert project_to_json(loaded) == project_to_json(project)
    assert loaded.fps == Fraction(30000, 1001)
    assert loaded.lines[0].takes[0].emotion.alpha == 0.5
    data = json.loads(saved.read_text(encoding="utf-8"))
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["fps"] == "30000/1001"
    assert "Héllo" in saved.read_text(encoding="utf-8")  # readable UTF-8, not escaped
    assert missing_media(loaded) == []


def test_save_as_elsewhere_rebases_relative_paths(tmp_path: Path) -> None:
    project = sample_project(tmp_path / "a")
    save_project(project)
    target = tmp_path / "b" / "deeper" / "copy.dubproj"
    target.parent.mkdir(parents=True)
    save_project(project, target)
    data = json.loads(target.read_text())
    assert data["video"] == os.path.join("..", "..", "a", "media", "clip.mp4")
    assert data["voices"][0]["clips"][0]["path"] == os.path.join(
        "..", "..", "a", "media", "maya.wav"
    )
    loaded = load_project(target)
    assert (
        loaded.resolve_path(loaded.video_path or "").resolve()
        == (tmp_path / "a" / "media" / "clip.mp4").resolve()
    )
    assert missing_media(loaded) == []
    (tmp_path / "a" / "media" / "clip.mp4").unlink()
    assert any("Video" in m for m in missing_media(loaded))


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "x.dubproj"
    atomic_write_bytes(path, b"old")
    with pytest.raises(OSError):
        atomic_write_bytes(tmp_path / "missing-folder" / "x", b"new")
    assert path.read_bytes() == b"old"
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["x.dubproj"]  # no temp files left


def test_autosave_and_recovery(tmp_path: Path) -> None:
    project = sample_project(tmp_path)
    path = save_project(project)
    assert recovery_candidate(path) is None
    project.update_line(project.lines[1].id, text="Unsaved change")
    time.sleep(0.01)  # mtime granularity, not a wait for a result
    auto = write_autosave(project)
    os.utime(auto, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
    assert auto == autosave_path(path)
    assert recovery_candidate(path) == auto
    assert load_project(path).lines[1].text == "Bye"
    recovered = load_project(path, recover=True)
    assert recovered.lines[1].text == "Unsaved change"
    assert recovered.path == path.absolute()
    save_project(recovered)
    assert not auto.exists()


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.dubproj"
    path.write_text('{"schema_version": 1,\n "lines": [}', encoding="utf-8")
    with pytest.raises(ProjectFileError, match=r"not valid JSON \(line 2, column"):
        load_project(path)


def test_validation_lists_every_problem_with_location(tmp_path: Path) -> None:
    project = sample_project(tmp_path)
    data = project_to_json(project)
    data["lines"][0]["start_frame"] = "thirty"
    data["lines"][1]["end_frame"] = 50  # before its start (100)
    data["lines"][1]["fit_mode"] = "squeeze"
    data["characters"]["Otto"] = "nobody"
    data["voices"][0]["clips"][0]["trim_end_s"] = 0.1
    path = tmp_path / "invalid.dubproj"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ProjectFileError) as info:
        load_project(path)
    message = str(info.value)
    assert "'start_frame' must be a whole number (got 'thirty')" in message
    assert "end after it starts" in message
    assert "fit mode 'squeeze' is unknown" in message
    assert "voice 'nobody' does not exist" in message
    assert "voice 1, clip 1" in message and "Trim range" in message


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.dubproj"
    path.write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1}), encoding="utf-8")
    with pytest.raises(ProjectFileError, match="newer DubStudio"):
        load_project(path)


def test_schema_0_is_migrated(tmp_path: Path) -> None:
    legacy = {
        "fps": 25,
        "lines": [{"id": "a", "text": "Old", "start_ms": 1000, "end_ms": 2500, "voice": None}],
    }
    path = tmp_path / "old.dubproj"
    path.write_text(json.dumps(legacy), encoding="utf-8")
    project = load_project(path)
    assert (project.lines[0].start_frame, project.lines[0].end_frame) == (25, 63)
    assert project.fps == 25


def test_never_pickled(tmp_path: Path) -> None:
    data = dumps(sample_project(tmp_path))
    json.loads(data)  # plain JSON
    assert not data.startswith(b"\x80")
