"""Exports from cached takes: programme length, gain, missing takes, clips, subtitles, recipes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dubstudio.core.errors import ExportError, ProjectFileError
from dubstudio.core.model import EmotionSpec, Project
from dubstudio.services.cache import RenderCache
from dubstudio.services.export import (
    clip_name,
    export_clips,
    export_mix,
    export_subtitles,
    programme_samples,
    start_time_reference,
)
from dubstudio.services.recipe import build_recipe, project_from_recipe, write_recipe
from dubstudio.services.takes import add_take, make_take, remove_take, select_take
from dubstudio.services.wavio import read_bext


def _give_takes(project: Project, cache: RenderCache, value: float = 0.25) -> None:
    """A constant-valued cached take of exactly its slot for every line."""
    for i, line in enumerate(project.lines):
        n = project.line_budget(line).slot_samples
        key = f"{i + 1:02x}{int(value * 1000):04x}".ljust(64, "a")
        cache.put(key, np.full(n, value, np.float32), project.sample_rate)
        take = make_take(
            cache_key=key,
            sample_rate=project.sample_rate,
            n_samples=n,
            seed=i,
            emotion=EmotionSpec(),
            budget_samples=n,
            model_identity="m",
            text=line.text,
            line_revision=line.revision,
        )
        add_take(project, line.id, take)


def test_programme_length_gain_and_missing(
    tmp_path: Path, project: Project, cache: RenderCache
) -> None:
    _give_takes(project, cache)
    project.set_setting("programme_frames", 250)  # the video runs past the last line
    project.set_setting("line_gain_db", {project.lines[0].id: -6.0})
    export_mix(project, cache, tmp_path / "mix.wav", float_output=True)
    mix = sf.read(tmp_path / "mix.wav")[0]
    assert len(mix) == programme_samples(project) == 250 * 22050 // 25
    first = project.line_budget(project.lines[0])
    assert mix[first.start_sample] == pytest.approx(0.25 * 10 ** (-6 / 20), rel=1e-6)
    assert np.all(mix[project.line_budget(project.lines[3]).end_sample :] == 0)
    # A line without audio is named, not silently left out.
    remove_take(project, project.lines[1].id, project.lines[1].active_take.id)  # type: ignore[union-attr]
    with pytest.raises(ExportError, match="#2 00:00:01:05"):
        export_mix(project, cache, tmp_path / "mix2.wav")
    export_mix(project, cache, tmp_path / "mix2.wav", missing_ok=True)
    assert sf.info(tmp_path / "mix2.wav").frames == len(mix)


def test_clips_names_and_time_references(
    tmp_path: Path, project: Project, cache: RenderCache
) -> None:
    _give_takes(project, cache)
    project.set_setting("programme_start_timecode", "01:00:00:00")
    assert start_time_reference(project) == 3600 * 22050
    result = export_clips(project, cache, tmp_path / "clips", bit_depth=16)
    names = [p.name for p in result.files]
    assert names[0] == "0001_00-00-00-05_Ann.wav" == clip_name(0, project.lines[0], project)
    assert names[1] == "0002_00-00-01-05_Bob.wav"
    for path, line in zip(result.files, project.lines, strict=True):
        info = sf.info(path)
        assert info.frames == project.line_budget(line).slot_samples and info.subtype == "PCM_16"
        bext = read_bext(path)
        assert bext is not None
        assert bext.time_reference == 3600 * 22050 + project.line_budget(line).start_sample


def test_selecting_another_take_keeps_timing(project: Project, cache: RenderCache) -> None:
    _give_takes(project, cache, 0.25)
    line = project.lines[0]
    first = line.active_take
    _give_takes(project, cache, 0.5)
    assert len(line.takes) == 2 and line.active_take is not first
    assert first is not None
    select_take(project, line.id, first.id)
    assert project.line(line.id).active_take == first
    assert {t.n_samples for t in line.takes} == {project.line_budget(line).slot_samples}


def test_subtitles_round_trip_with_rendered_timing(tmp_path: Path, project: Project) -> None:
    from dubstudio.core.subtitles import read_subtitles

    export_subtitles(project, tmp_path / "out.srt")
    cues = read_subtitles(tmp_path / "out.srt").cues
    assert [c.start_ms for c in cues] == [200, 1200, 1600, 2800]
    assert cues[1].character == "Bob"
    with pytest.raises(ExportError):
        export_subtitles(project, tmp_path / "out.txt")


def test_recipe_lists_everything_and_detects_a_changed_voice(
    tmp_path: Path, project: Project, cache: RenderCache, voice_wav: Path
) -> None:
    _give_takes(project, cache)
    recipe = build_recipe(project, model_identity="m" * 64, cache=cache, base_dir=tmp_path)
    line = recipe["lines"][1]
    assert line["speech_text"] == "Who is it?" and line["text"] == "<i>Who</i> is it?"
    assert line["budget_samples"] == project.line_budget(project.lines[1]).slot_samples
    assert line["seed"] == 1 and line["take"]["sha256"]
    assert recipe["voices"][line["voice"]]["path"] == "voice2.wav"
    path = write_recipe(recipe, tmp_path / "r.json")
    remade, _ = project_from_recipe(path)
    assert [x.text for x in remade.lines] == [x.text for x in project.lines]
    assert [x.seed for x in remade.lines] == [0, 1, 2, 3]
    assert json.loads(path.read_text())["fps"] == "25/1"
    sf.write(voice_wav, np.zeros(800, np.float32), 16000)  # the clip changed
    with pytest.raises(ProjectFileError, match="changed"):
        project_from_recipe(path)
